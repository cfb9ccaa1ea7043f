#include "policy/identity.hpp"

namespace bulwark {

bool sender_allowed(bool global_on, const std::string& auth_user, bool in_relay_group, const Address& sender,
                    const IdentityLookup& dir) {
  if (!global_on || sender.empty()) return true;
  if (!auth_user.empty()) {
    size_t at = auth_user.rfind('@');
    auto on = dir.domain_switch(at == std::string::npos ? std::string() : auth_user.substr(at + 1));
    if (on && !*on) return true;  // the user's domain opted out
    return dir.may_send_as(auth_user, sender);
  }
  if (sender.domain_is_literal()) return true;
  auto on = dir.domain_switch(sender.domain);
  if (!on || !*on) return true;  // not ours, or the domain opted out
  return in_relay_group;
}

}  // namespace bulwark
