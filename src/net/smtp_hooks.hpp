// net/: what one SMTP session asks of the rest of the server -- directory lookups,
// relay and limit decisions, authentication, sender identity -- with the security
// log lines for every refusal. One SmtpHooks per session; it holds that session's
// authentication state.
#pragma once
#include <memory>
#include <string>

#include "auth/sasl.hpp"
#include "directory/directory.hpp"
#include "net/login.hpp"
#include "policy/greylist.hpp"
#include "policy/identity.hpp"
#include "policy/policy.hpp"
#include "queue/spool.hpp"
#include "smtp/session.hpp"

namespace bulwark {

// What the policy layer needs to know about one session.
struct SessionPolicy {
  std::shared_ptr<const IpGroups> groups;
  RelaySettings relay;
  ClientLimits& limits;
  PopLogins& pop;
  uint64_t max_messages_per_hour = 0;
  bool exempt = false;
  bool trusted = false;  // relay.trusted_ip_group: no DNS checks
  bool require_ptr = false;
  bool require_sender_domain = false;
  bool anti_spoofing = true;  // policy.anti_spoofing
  std::string postmaster;     // server.postmaster
  std::vector<std::string> dnsbl_zones;  // dnsbl.zones
  Greylist* greylist = nullptr;          // when greylisting is on
};

class SmtpHooks : public smtp::SessionHooks {
 public:
  SmtpHooks(Directory& d, Spool& s, Logins& logins, std::string ip, IpAddress ipa, std::string hostname,
            SessionPolicy policy);

  smtp::RecipientLookup lookup_recipient(const Address& a) override;
  bool may_relay(const Address& rcpt) override;
  std::optional<smtp::Reply> check_sender(const Address& sender) override;
  bool sender_needs_check(const Address& sender) override;
  std::optional<smtp::Reply> check_recipient(const std::string& sender, const Address& rcpt) override;
  // DNSBL: the lookup is due (zones set, the client not exempt, not yet looked up),
  // and its result (the listing zone, or "").
  bool dnsbl_due() const;
  void dnsbl_result(const std::string& zone);
  bool unknown_recipient() override;
  void refused(std::string_view what) override;
  std::optional<smtp::Reply> check_message(std::string_view data) override;
  std::string new_queue_id() override { return spool_.new_id(); }
  const BodySpill* body_spill() override { return spool_.body_spill(); }
  std::chrono::system_clock::time_point now() override { return std::chrono::system_clock::now(); }

  auth::SecretSource* secrets() override { return &logins_; }
  bool auth_blocked() override { return slot_.blocked(); }
  bool begin_check() override { return slot_.acquire() == Logins::Attempt::ok; }
  void end_check() override { slot_.release(); }
  LoginSlot& slot() { return slot_; }
  std::string auth_succeeded(auth::Mech m, const std::string& user) override;
  bool auth_failed(auth::Mech m, const std::string& user, std::string_view why) override;
  void auth_reset() override { auth_user_.clear(); }  // a failed AUTH still counts

  // The message comes from one of ours (smtp::Envelope::ours): authenticated, or a
  // client the relay settings trust to send (IP group not revoked, POP-before-SMTP).
  // relay.open does not make a client ours.
  bool ours() const;

 private:
  bool in_relay_group() const;

  Directory& dir_;
  Spool& spool_;
  Logins& logins_;
  std::string ip_;
  IpAddress ipa_;
  LoginSlot slot_;  // a login attempt in progress (after ip_ and ipa_: it refers to them)
  std::string hostname_;
  SessionPolicy p_;
  IdentityLookup identity_;
  std::string auth_user_;    // set by a successful AUTH
  std::string pop_user_;     // this transaction's sender belongs to this POP-before-SMTP user
  bool relayed_as_pop_user_ = false;  // and a recipient was relayed through the window
  bool auth_failed_ = false;  // any failed AUTH: the IP-group relay right is gone
  bool dnsbl_checked_ = false;
  std::string dnsbl_zone_;    // the zone that lists the client
};

}  // namespace bulwark
