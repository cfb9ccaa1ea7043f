#include "net/smtp_hooks.hpp"

#include "core/header.hpp"
#include "core/strings.hpp"
#include "logging/logs.hpp"

namespace bulwark {

SmtpHooks::SmtpHooks(Directory& d, Spool& s, Logins& logins, std::string ip, IpAddress ipa, std::string hostname,
                     SessionPolicy policy)
    : dir_(d),
      spool_(s),
      logins_(logins),
      ip_(std::move(ip)),
      ipa_(ipa),
      slot_(logins, "SMTP AUTH", ip_, ipa_),
      hostname_(std::move(hostname)),
      p_(std::move(policy)) {
  // The server's own host name is ours even when it is no mail domain: nobody may
  // use it as a sender from outside (anti-spoofing as for a local domain).
  identity_.domain_switch = [this](const std::string& domain) -> std::optional<bool> {
    auto on = dir_.domain_anti_spoofing(domain);
    if (!on && iequals(domain, hostname_)) return true;
    return on;
  };
  identity_.may_send_as = [this](const std::string& user, const Address& a) { return dir_.may_send_as(user, a); };
}

smtp::RecipientLookup SmtpHooks::lookup_recipient(const Address& a) {
  // RFC 5321 4.5.1: postmaster@ every domain we accept, our host name and the bare
  // <Postmaster> must be taken. A domain without its own goes to the fallback.
  bool postmaster = iequals(a.local, "postmaster") &&
                    (a.domain.empty() || iequals(a.domain, hostname_) || dir_.is_local_domain(a.domain));
  Resolution r = a.domain.empty() ? Resolution{Resolution::unknown, {}, {}} : dir_.resolve(a);
  if (postmaster && (r.kind == Resolution::unknown || r.kind == Resolution::not_local)) {
    r = dir_.resolve_postmaster(hostname_, p_.postmaster);
    if (r.kind == Resolution::unknown) {
      // Not ours to lose: the sender tries again while the administrator fixes it.
      logs::main().error("mail for <{}> has nowhere to go: add a postmaster alias or set server.postmaster",
                         sanitize(a.str()));
      r.kind = Resolution::temp_failure;
    }
  }
  smtp::RecipientLookup out;
  out.kind = static_cast<smtp::RecipientLookup::Kind>(r.kind);
  out.mailboxes = std::move(r.mailboxes);
  out.remote = std::move(r.remote);
  return out;
}

bool SmtpHooks::in_relay_group() const {
  return !p_.relay.allow_ip_group.empty() && p_.groups->contains(p_.relay.allow_ip_group, ipa_);
}

bool SmtpHooks::ours() const {
  return !auth_user_.empty() || (in_relay_group() && !auth_failed_) || p_.pop.within(ipa_, p_.relay.pop_before_smtp);
}

bool SmtpHooks::may_relay(const Address& rcpt) {
  RelayInputs in{ipa_, !auth_user_.empty(), auth_failed_};
  RelayVerdict v = decide_relay(p_.relay, *p_.groups, p_.pop, in);
  if (v == RelayVerdict::pop_before_smtp) {
    // Relaying through the window: as the user whose login opened it, with that
    // user's addresses only (SPEC 9), as an authenticated session would.
    if (!pop_user_.empty()) {
      relayed_as_pop_user_ = true;
      return true;
    }
    logs::security().info("SMTP relay denied from {}: recipient <{}> through the POP-before-SMTP window, but the "
                          "sender is not an address of a user who logged in from there",
                          ip_, sanitize(rcpt.str()));
    return false;
  }
  if (v != RelayVerdict::denied) return true;
  logs::security().info("SMTP relay denied from {}: recipient <{}> is not local{}", ip_, sanitize(rcpt.str()),
                        auth_failed_ && in_relay_group() ? " (IP group right revoked by a failed AUTH)" : "");
  return false;
}

std::optional<smtp::Reply> SmtpHooks::check_sender(const Address& sender) {
  pop_user_.clear();
  relayed_as_pop_user_ = false;
  bool ok = sender_allowed(p_.anti_spoofing, auth_user_, in_relay_group() && !auth_failed_, sender, identity_);
  if (auth_user_.empty()) {
    // Within a POP-before-SMTP window the session is known as the user whose POP3 or
    // IMAP login opened it (seed 002, SPEC 9): that user's addresses are allowed, as
    // for an authenticated session. Several users behind one address: any of theirs.
    for (auto& user : p_.pop.users_within(ipa_, p_.relay.pop_before_smtp))
      if (sender_allowed(p_.anti_spoofing, user, false, sender, identity_)) {
        pop_user_ = user;
        ok = true;
        break;
      }
  }
  if (!ok) {
    logs::security().info("SMTP sender <{}> from {} refused: not allowed for {}", sanitize(sender.str()), ip_,
                          auth_user_.empty() ? std::string("an unauthenticated client") : auth_user_);
    return smtp::Reply(550, "5.7.1", "Sender address not allowed");
  }
  if (p_.exempt || p_.limits.message_allowed(ipa_)) return std::nullopt;
  logs::security().info("SMTP message from {} refused: more than {} messages in the last hour", ip_,
                        p_.max_messages_per_hour);
  return smtp::Reply(450, "4.7.1", "Too many messages from your address in the last hour, try again later");
}

std::optional<smtp::Reply> SmtpHooks::check_message(std::string_view data) {
  // The From: header is checked for authenticated users (SPEC 9), and for a session
  // relaying through a POP-before-SMTP window as the user who opened it; an
  // unauthenticated client's From: is the recipient's spam filter's business.
  const std::string& who = !auth_user_.empty() ? auth_user_ : relayed_as_pop_user_ ? pop_user_ : auth_user_;
  if (who.empty()) return std::nullopt;
  HeaderAddresses from = header_addresses(data, "from");
  if (from.fields == 0) {  // RFC 5322 3.6: required; without it there is nothing to check
    logs::security().info("SMTP message from {} refused: no From: header ({})", ip_, who);
    return smtp::Reply(550, "5.6.0", "Message has no From: header field (RFC 5322 3.6)");
  }
  if (!p_.anti_spoofing) return std::nullopt;
  bool ok = from.ok && from.fields <= 1;
  std::string bad;
  for (auto& a : from.addresses)
    if (ok && !sender_allowed(true, who, false, a, identity_)) {
      ok = false;
      bad = a.str();
    }
  if (ok) return std::nullopt;
  logs::security().info("SMTP message from {} refused: From: {} not allowed for {}", ip_,
                        bad.empty() ? std::string("header unreadable or repeated") : "<" + sanitize(bad) + ">",
                        who);
  return smtp::Reply(550, "5.7.1", "Sender address not allowed (From: header)");
}

bool SmtpHooks::sender_needs_check(const Address& sender) {
  if (p_.exempt || p_.trusted) return false;
  return p_.require_ptr || (p_.require_sender_domain && !sender.empty()) || dnsbl_due();
}

bool SmtpHooks::dnsbl_due() const {
  return !p_.dnsbl_zones.empty() && !dnsbl_checked_ && !p_.exempt && !p_.trusted && !ours();
}

void SmtpHooks::dnsbl_result(const std::string& zone) {
  dnsbl_checked_ = true;
  dnsbl_zone_ = zone;
}

// SPEC 11: DNSBL and greylisting spare the exempt and trusted groups and mail of ours;
// mail to postmaster is always taken (RFC 5321 4.5.1), so a listed sender can still
// reach a human about it.
std::optional<smtp::Reply> SmtpHooks::check_recipient(const std::string& sender, const Address& rcpt) {
  if (p_.exempt || p_.trusted || ours() || iequals(rcpt.local, "postmaster")) return std::nullopt;
  if (!dnsbl_zone_.empty()) {
    logs::security().info("SMTP client {} listed in {}: recipient <{}> refused", ip_, dnsbl_zone_,
                          sanitize(rcpt.str()));
    return smtp::Reply(554, "5.7.1", "Service unavailable; client [" + ip_ + "] blocked using " + dnsbl_zone_);
  }
  if (p_.greylist) {
    int64_t left = 0;
    if (p_.greylist->check(ipa_, sender, rcpt.str(), &left) == Greylist::Verdict::defer) {
      logs::mail().info("greylisted client={} from=<{}> to=<{}> retry_after={}s", ip_, sanitize(sender),
                        sanitize(rcpt.str()), left);
      return smtp::Reply(451, "4.7.1", "Greylisted, please try again in " + std::to_string(left) + " seconds");
    }
  }
  return std::nullopt;
}

bool SmtpHooks::unknown_recipient() {
  if (p_.exempt || !p_.limits.unknown_recipient(ipa_)) return false;
  logs::security().info("SMTP client {} blocked: too many unknown recipients (directory harvest attack)", ip_);
  return true;
}

void SmtpHooks::refused(std::string_view what) { logs::security().info("SMTP refused from {}: {}", ip_, sanitize(what)); }

std::string SmtpHooks::auth_succeeded(auth::Mech m, const std::string& user) {
  slot_.release();
  auth_user_ = logins_.succeeded("SMTP AUTH", auth::mech_name(m), user, ip_, ipa_, false);
  return auth_user_;
}

bool SmtpHooks::auth_failed(auth::Mech m, const std::string& user, std::string_view why) {
  auth_failed_ = true;
  return slot_.failed(auth::mech_name(m), user, why);
}

}  // namespace bulwark
