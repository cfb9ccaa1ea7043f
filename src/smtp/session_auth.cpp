// ServerSession: SMTP AUTH (RFC 4954) and the security policy of SPEC 8 -- which
// mechanisms are offered where, the exchange itself, and its outcome.
#include "core/strings.hpp"
#include "smtp/session.hpp"

namespace bulwark::smtp {
bool ServerSession::need_tls_first() const {
  return cfg_.auth.mode == AuthMode::encrypted && cfg_.service == Service::submission && !client_.tls;
}

bool ServerSession::mechanism_usable(auth::Mech m) const {
  // Port 25 under `encrypted` offers no AUTH without TLS at all (SPEC 8), which is
  // what the shared policy says for every mechanism before TLS.
  return cfg_.auth.usable(m, client_.tls);
}

namespace {
struct NoSecrets : auth::SecretSource {
  std::optional<auth::ScramSecret> scram_secret(const std::string&) override { return std::nullopt; }
  std::optional<auth::CramSecret> cram_md5_secret(const std::string&) override { return std::nullopt; }
};
}  // namespace

void ServerSession::cmd_auth(std::string_view arg, Output& out) {
  if (helo_.empty() || !esmtp_) return fail(out, Reply(503, "5.5.1", "Send EHLO first"));
  if (!auth_user_.empty()) return fail(out, Reply(503, "5.5.1", "Already authenticated"));
  if (mail_given_) return fail(out, Reply(503, "5.5.1", "AUTH not allowed during a mail transaction"));
  auto [name, initial] = split_word(trim(arg));
  auto m = auth::mech_from_name(name);
  bool configured = false;
  for (auto c : cfg_.auth.mechanisms) configured |= m && c == *m;
  if (!configured) return fail(out, Reply(504, "5.5.4", "Unrecognized authentication type"));
  if (!mechanism_usable(*m)) {
    hooks_.refused(std::string("AUTH ") + auth::mech_name(*m) + " without TLS");
    if (cfg_.auth.mode == AuthMode::encrypted) return fail(out, Reply(530, "5.7.0", "Must issue a STARTTLS command first"));
    return fail(out, Reply(538, "5.7.11", "Encryption required for requested authentication mechanism"));
  }
  if (hooks_.auth_blocked())
    return fail(out, Reply(454, "4.7.0", "Too many failed logins from your address, try again later"));
  std::optional<std::string> init;
  initial = trim(initial);
  if (!initial.empty()) {
    if (initial == "=") {
      init = std::string();
    } else {
      init = auth::base64_decode(initial);
      if (!init) return fail(out, Reply(501, "5.5.2", "Cannot decode the Base64 initial response"));
    }
  }
  static NoSecrets none;
  auth::SecretSource* src = hooks_.secrets();
  mech_ = auth::make_mechanism(*m, src ? *src : none, {cfg_.hostname, {}});
  mech_kind_ = *m;
  auth_final_ = false;
  if (!hooks_.begin_check()) {
    mech_.reset();
    if (init) auth::wipe(*init);
    return fail(out, Reply(454, "4.7.0", "Too many logins at once from your address, try again later"));
  }
  auth::Step step = mech_->start(init);
  if (init) auth::wipe(*init);
  if (step.kind != auth::Step::failure) hooks_.end_check();
  auth_step(std::move(step), out);
}

void ServerSession::auth_step(auth::Step step, Output& out) {
  switch (step.kind) {
    case auth::Step::challenge:
      set_state(State::auth);
      return reply(out, Reply(334, "", auth::base64_encode(step.data)));
    case auth::Step::verify_password:
      login_.user = std::move(step.user);
      login_.password = std::move(step.password);
      set_state(State::wait_verify);
      out.next = Next::verify;
      return;
    case auth::Step::success:
      if (step.data.empty()) return auth_success(step.user, out);
      // Additional data with success travels as one more challenge (RFC 4954 4).
      auth_final_ = true;
      auth_pending_user_ = step.user;
      set_state(State::auth);
      return reply(out, Reply(334, "", auth::base64_encode(step.data)));
    case auth::Step::failure: return auth_failure(step.user, step.why, out);
  }
}

bool ServerSession::process_auth_line(Output& out) {
  std::string_view line;
  LineResult r = take_line(out, cfg_.auth.max_line, line, Reply(500, "5.5.6", "Authentication Exchange line is too long"));
  if (r == LineResult::more) return false;
  if (r == LineResult::bad) {  // the exchange is over; the reply is written
    mech_.reset();
    if (state_ == State::auth) set_state(State::command);
    return true;
  }
  if (line == "*") {
    mech_.reset();
    set_state(State::command);
    reply(out, Reply(501, "5.0.0", "Authentication cancelled"));
    return true;
  }
  if (auth_final_) {
    auth_final_ = false;
    if (line.empty()) auth_success(auth_pending_user_, out);
    else auth_failure(auth_pending_user_, auth::Step::Why::malformed, out);
    return true;
  }
  auto decoded = auth::base64_decode(line);
  if (!decoded) {
    mech_.reset();
    set_state(State::command);
    fail(out, Reply(501, "5.5.2", "Cannot decode the Base64 response"));
    return true;
  }
  if (!hooks_.begin_check()) {
    mech_.reset();
    auth::wipe(*decoded);
    set_state(State::command);
    fail(out, Reply(454, "4.7.0", "Too many logins at once from your address, try again later"));
    return true;
  }
  auth::Step step = mech_->next(*decoded);
  auth::wipe(*decoded);
  if (step.kind != auth::Step::failure) hooks_.end_check();
  auth_step(std::move(step), out);
  return true;
}

void ServerSession::auth_success(const std::string& user, Output& out) {
  mech_.reset();
  set_state(State::command);
  auth_user_ = hooks_.auth_succeeded(mech_kind_, user);
  reply(out, Reply(235, "2.7.0", "Authentication successful"));
}

void ServerSession::auth_failure(const std::string& user, auth::Step::Why why, Output& out) {
  mech_.reset();
  set_state(State::command);
  const char* what = why == auth::Step::Why::malformed       ? "malformed exchange"
                     : why == auth::Step::Why::impersonation ? "authorization identity differs (impersonation)"
                                                             : "invalid credentials";
  hooks_.auth_failed(mech_kind_, user, what);
  out.delay = cfg_.auth.failure_delay;
  if (why == auth::Step::Why::malformed) return fail(out, Reply(501, "5.5.2", "Malformed authentication exchange"));
  fail(out, Reply(535, "5.7.8", "Authentication credentials invalid"));
}

Output ServerSession::login_unavailable(std::string_view why) {
  Output out;
  auth::wipe(login_.password);
  login_ = LoginRequest{};
  mech_.reset();
  set_state(State::command);
  fail(out, Reply(454, "4.7.0", std::string(why)));
  return process(std::move(out));
}

Output ServerSession::login_finished(bool ok) {
  Output out;
  std::string user = std::move(login_.user);
  auth::wipe(login_.password);
  login_ = LoginRequest{};
  if (ok) auth_success(user, out);
  else auth_failure(user, auth::Step::Why::bad_credentials, out);
  return process(std::move(out));
}

}  // namespace bulwark::smtp
