// imap/: the IMAP server session without I/O (RFC 9051, RFC 3501 clients) -- this part:
// the connection and login states. Greeting, CAPABILITY (LOGINDISABLED where the
// policy of SPEC 8 allows no plaintext login here), NOOP, LOGOUT, STARTTLS (input
// pipelined behind it dropped), LOGIN, AUTHENTICATE with SASL-IR (RFC 4959), ID (RFC
// 2971), ENABLE (RFC 5161), tagged BAD for what cannot be parsed, failed commands
// counted toward a limit and then "* BYE". Login goes through the same policy and
// machinery as SMTP AUTH and POP3 (auth::LoginPolicy; the driver runs the password
// check off the I/O thread). The authenticated state's folder commands (NAMESPACE,
// LIST with LIST-EXTENDED/LIST-STATUS/SPECIAL-USE, LSUB, STATUS, CREATE, DELETE,
// RENAME, SUBSCRIBE, UNSUBSCRIBE) work on a Mailbox (mailbox.hpp). The selected state
// comes next (issue 10); until then the imap listeners are refused by the configuration.
// Depends on core/ and auth/ only.
#pragma once
#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "auth/sasl.hpp"
#include "imap/mailbox.hpp"
#include "imap/parser.hpp"

namespace bulwark::imap {

struct Config {
  std::string hostname;
  bool starttls_available = false;  // imap with a certificate (never on imaps)
  auth::LoginPolicy auth;
  uint32_t max_failed_commands = 10;  // 0: no limit
  Limits limits;
};

struct ClientInfo {
  std::string ip;
  bool tls = false;
};

class Hooks {
 public:
  virtual ~Hooks() = default;
  virtual auth::SecretSource& secrets() = 0;
  virtual bool login_blocked() = 0;
  // Around each step of a login mechanism, which may check credentials in the session
  // (SCRAM, CRAM-MD5): false -- refused now (blocked, or as many checks in flight from
  // the address as may still fail): the exchange ends with "try later". end_check after
  // a step that did not fail (a failure's login_failed gives the slot back).
  virtual bool begin_check() { return true; }
  virtual void end_check() {}
  virtual void login_failed(std::string_view mech, const std::string& user, std::string_view why) = 0;
  virtual void refused(const std::string& what) = 0;
};

enum class Next {
  read,       // write `bytes`, read more
  close,      // write `bytes`, close
  starttls,   // write `bytes`, handshake, then tls_started()
  verify,     // check pending_login() off the I/O thread, then login_finished()
  logged_in,  // write `bytes`; the user is login_user(): log it, open the mailbox
  more,       // write `bytes`, then resume(): a long answer (FETCH) comes in pieces
  compress,   // write `bytes` as they are, then deflate both ways; take_input() was sent compressed
};

struct Output {
  std::string bytes;
  Next next = Next::read;
  std::chrono::milliseconds delay{0};
};

enum class State { not_authenticated, verifying, authenticated, selected, idle, logout };

class Session {
 public:
  Session(Config cfg, Hooks& hooks, ClientInfo client);
  ~Session();

  Output greet();
  Output feed(std::string_view bytes);
  Output tls_started();

  struct LoginRequest {
    std::string user, password;
  };
  const LoginRequest& pending_login() const { return login_; }
  Output login_finished(bool ok);
  // No check could be made (the address is blocked, or its checks in flight stayed
  // full): "try again later", counted as nothing.
  // A login that cannot be checked now ("try later"): too many at once from the
  // address, or the user directory unreachable (cluster mode).
  Output login_unavailable(std::string_view why = "Too many logins at once from your address, try again later");

  const std::string& login_user() const { return user_; }
  // The logged-in user's mailbox (set by the driver at Next::logged_in; outlives the
  // session's use of it).
  void set_mailbox(Mailbox* m) { mailbox_ = m; }
  // After Next::logged_in (the driver has opened the mailbox): commands pipelined
  // behind the login.
  Output resume();
  const std::string& login_mech() const { return mech_name_; }

  enum class Closing { timeout, shutdown };
  Output shutdown(Closing why);

  State state() const { return state_; }
  // After Next::compress: what the client sent behind COMPRESS (already compressed).
  std::string take_input() { return reader_.take_buffer(); }
  // In IDLE: the driver calls this when the folder may have changed (a delivery, a
  // timer); the untagged updates to send, if any.
  Output idle_tick();
  std::string capabilities() const;  // the CAPABILITY line's words for now

 private:
  Output process(Output out);
  void command(Command& c, Output& out);
  void tagged(Output& out, const std::string& tag, std::string_view status, std::string_view text);
  void bad(Output& out, const std::string& tag, std::string_view text);  // counts
  void no(Output& out, const std::string& tag, std::string_view text);   // does not count
  void cmd_login(Command& c, Output& out);
  void cmd_authenticate(Command& c, Output& out);
  void cmd_enable(Command& c, Output& out);
  void cmd_id(Command& c, Output& out);
  void cmd_list(Command& c, Output& out, bool lsub);
  void cmd_status(Command& c, Output& out);
  void cmd_folder_change(Command& c, Output& out);
  // selected state (selected.cpp)
  void cmd_select(Command& c, Output& out, bool readonly);
  void cmd_fetch(Command& c, Output& out, bool uid);
  void continue_fetch(Output& out);
  void cmd_store(Command& c, Output& out, bool uid);
  void cmd_expunge(Command& c, Output& out, bool uid);
  void cmd_search(Command& c, Output& out, bool uid);
  // The UIDs of the view's messages that match `keys` (SEARCH, SORT, THREAD), in view
  // order; false when a key is malformed. `used_modseq`: the MODSEQ key was used.
  // why: what was wrong when false
  bool search_hits(const std::vector<Token>& keys, std::vector<uint32_t>& hits, bool& used_modseq, std::string& why);
  void answer_search(Command& c, Output& out, bool uid, const std::vector<uint32_t>& hits, bool used_modseq,
                     const std::vector<std::string>& ret, bool esearch, bool save);
  // SORT, THREAD (RFC 5256), ESORT (RFC 5267): sort.cpp
  void cmd_sort(Command& c, Output& out, bool uid);
  void cmd_thread(Command& c, Output& out, bool uid);
  void cmd_copy(Command& c, Output& out, bool uid, bool move);
  void cmd_append(Command& c, Output& out);
  // QRESYNC: a UID set as written (merged ranges; * = the highest UID given), and the
  // UIDs in ranges that the view lacks, as a set for VANISHED (EARLIER).
  std::optional<std::vector<std::pair<uint64_t, uint64_t>>> uid_ranges(std::string_view set) const;
  std::string vanished_in(const std::vector<std::pair<uint64_t, uint64_t>>& ranges) const;
  void deselect();
  // What changed in the folder since the client last heard: EXPUNGE, EXISTS, FETCH.
  void report_changes(Output& out, bool expunges_allowed = true);
  // A sequence set ("1:3,7,9:*") as UIDs of the view; nothing if malformed.
  std::optional<std::vector<uint32_t>> message_set(std::string_view s, bool uid) const;
  size_t seq_of(uint32_t uid) const;  // 1-based; 0 if not in the view
  // The flags of message `uid` as FLAGS shows them: system flags, keywords, and for an
  // IMAP4rev1 session \Recent when the message is recent for it.
  std::string flags_text(const std::string& letters, uint32_t uid = 0) const;
  bool recent(uint32_t uid) const { return !rev2_ && std::binary_search(recent_.begin(), recent_.end(), uid); }
  // New messages of the view from index `from` on: those this session may call recent
  // (claimed unless read-only) join recent_.
  void take_recent(size_t from);
  // A mailbox name argument as UTF-8 (modified UTF-7 decoded for IMAP4rev1 clients).
  std::optional<std::string> name_arg(const Token& t) const;
  std::string name_out(const std::string& utf8) const;  // quoted, encoded for the client
  std::string status_items(const FolderStatus& st, const std::vector<std::string>& items) const;
  void auth_line(std::string_view line, Output& out);
  void auth_step(auth::Step step, Output& out);
  void auth_failure(const std::string& user, auth::Step::Why why, Output& out);
  void logged_in(const std::string& user, Output& out);
  void give_back();
  bool plaintext_allowed() const { return cfg_.auth.plaintext_ok(client_.tls); }

  Config cfg_;
  Hooks& hooks_;
  ClientInfo client_;
  Reader reader_;
  State state_ = State::not_authenticated;
  uint32_t failed_ = 0;
  std::string user_, mech_name_, tag_;  // tag_: the command waiting on the driver
  LoginRequest login_;
  std::unique_ptr<auth::Mechanism> mech_;  // an AUTHENTICATE exchange in progress
  bool auth_final_ = false;
  std::string auth_user_, auth_buf_;
  bool rev2_ = false, condstore_ = false, utf8_ = false, qresync_ = false, compressed_ = false;
  Mailbox* mailbox_ = nullptr;
  // The selected folder and the client's view of it: UIDs in sequence order and the
  // modseq each had when the client last heard of it.
  std::unique_ptr<OpenFolder> folder_;
  std::string folder_name_;
  bool readonly_ = false;
  std::vector<uint32_t> view_;
  std::vector<uint64_t> view_modseq_;
  std::vector<uint32_t> recent_;  // UIDs recent for this session (IMAP4rev1 \Recent), sorted
  struct PendingFetch {
    std::string tag;
    bool uid = false;
    std::vector<uint32_t> uids;
    size_t next = 0;
    std::vector<Token> items;
    bool unknown_cte = false;  // a BINARY part in an encoding bulwark cannot undo
    bool unreadable = false;   // a message's content could not be read (not: gone)
  };
  std::optional<PendingFetch> fetch_;
  std::vector<uint32_t> saved_;
  std::vector<std::string> keywords_;  // the selected folder's keyword names, by letter (a..)
  char keywords_checked_ = 0;          // the highest letter looked up in the folder since
  std::string flag_list() const;       // system flags and keywords, for FLAGS and PERMANENTFLAGS  // SEARCHRES: the UIDs of SEARCH RETURN (SAVE), "$" (RFC 5182)
  std::string idle_tag_;
  // The streamed (large) literals of the command being read, in order: an APPEND's go
  // straight to a file of the folder where the mailbox offers it, others are held
  // (all together bounded by Limits::max_literal).
  struct Streamed {
    std::unique_ptr<AppendSink> sink;
    std::string buf;
    bool failed = false;  // a write failed, or nowhere to put it (no such folder)
  };
  std::vector<Streamed> streamed_;
};

}  // namespace bulwark::imap
