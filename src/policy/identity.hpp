// policy/: sender identity, the anti-spoofing rule of SPEC 9. The directory is
// reached through two functions, so the rule is tested without one.
#pragma once
#include <functional>
#include <optional>
#include <string>

#include "core/address.hpp"

namespace bulwark {

struct IdentityLookup {
  // The anti-spoofing switch of a local domain; nothing when the domain is not local.
  std::function<std::optional<bool>(const std::string& domain)> domain_switch;
  // May the user (lookup key) use this address (own, alias, group, delegation)?
  std::function<bool(const std::string& user, const Address& sender)> may_send_as;
};

// May this session use `sender` (envelope sender or a From: address)?
//  - anti-spoofing off globally, or the null sender: yes;
//  - authenticated: if the user's own domain has the check on, only the addresses
//    the user may use (any domain: our users send as themselves);
//  - not authenticated: a local-domain address whose domain has the check on only
//    from relay.allow_ip_group.
bool sender_allowed(bool global_on, const std::string& auth_user, bool in_relay_group, const Address& sender,
                    const IdentityLookup& dir);

}  // namespace bulwark
