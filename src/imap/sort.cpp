// Session: SORT and THREAD (RFC 5256) and ESORT (RFC 5267). The keys come from the
// messages' headers through OpenFolder::keys (kept by the store per folder), never
// from bodies; ties go by sequence number, as RFC 5256 says.
#include <algorithm>
#include <array>
#include <optional>
#include <functional>
#include <unordered_map>

#include "core/strings.hpp"
#include "imap/message_text.hpp"
#include "imap/session.hpp"

namespace bulwark::imap {
namespace {

struct Item {
  uint32_t uid = 0, seq = 0;
  const MessageRef* ref = nullptr;
  const SortKeys* keys = nullptr;  // never null (kept by the batch the items came with)
  int64_t sent = 0;                // the Date: field, else INTERNALDATE (RFC 5256)
  std::array<uint32_t, kKeyFields> rank{};  // by KeyField, where the batch gave ranks
  int64_t date() const { return sent; }
};

enum class Key { arrival, cc, date, from, size, subject, to };
std::optional<KeyField> field_of(Key k) {
  switch (k) {
    case Key::subject: return KeyField::subject;
    case Key::from: return KeyField::from;
    case Key::to: return KeyField::to;
    case Key::cc: return KeyField::cc;
    default: return std::nullopt;
  }
}

// SORT and THREAD know UTF-8 and its subset US-ASCII (RFC 5256: both MUST)
bool known_charset(const Token& t) {
  std::string cs = to_upper(t.value);
  return t.kind != Token::Kind::list && (cs == "UTF-8" || cs == "US-ASCII");
}

// The messages a search found (`hits`, by UID, all in `view`), with their keys when the
// order needs them (an unreadable message gets empty keys and sorts first) and the
// ranks of the fields in `ranked` where the store gives them (ranks[f]: all have it).
struct Found {
  std::vector<Item> items;
  std::array<bool, kKeyFields> ranks{};
  OpenFolder::KeyBatch batch;  // holds the keys
};
void find(Found& found, const std::vector<uint32_t>& hits, OpenFolder& folder, const std::vector<uint32_t>& view,
          bool need_keys, unsigned ranked) {
  static const SortKeys none;
  const auto& msgs = folder.messages();
  std::string error;
  auto& batch = found.batch;
  if (need_keys) batch = folder.keys(hits, error, ranked);
  for (size_t f = 0; f < kKeyFields; ++f) found.ranks[f] = batch.rank[f].size() == hits.size();
  auto& items = found.items;
  items.reserve(hits.size());
  auto m = msgs.begin();
  auto v = view.begin();
  for (size_t i = 0; i < hits.size(); ++i) {  // hits, msgs and view all go by UID: one walk
    uint32_t u = hits[i];
    while (m != msgs.end() && m->uid < u) ++m;
    while (v != view.end() && *v < u) ++v;
    const SortKeys* k = need_keys && batch.keys[i] ? batch.keys[i] : &none;
    Item it{u, uint32_t(v - view.begin() + 1), &*m, k, k->sent ? k->sent : m->internal_date, {}};
    for (size_t f = 0; f < kKeyFields; ++f)
      if (found.ranks[f]) it.rank[f] = batch.rank[f][i];
    items.push_back(it);
  }
}

// REFERENCES (RFC 5256 4): containers linked by Message-ID, References and In-Reply-To.
class Threader {
 public:
  explicit Threader(std::vector<Item>& items) : items_(items) {
    nodes_.reserve(items.size() * 2);
    by_id_.reserve(items.size() * 2);
  }

  std::vector<int> run() {
    for (size_t i = 0; i < items_.size(); ++i) place(int(i));
    by_id_.clear();  // (3)
    std::vector<int> roots;  // (2)
    for (size_t n = 0; n < nodes_.size(); ++n)
      if (nodes_[n].parent < 0) roots.push_back(int(n));
    prune(roots);  // (4)
    // (5) walks the threads oldest first (as Dovecot does): which message of a subject
    // becomes the others' parent depends on the order it meets them in
    sort_level(roots);
    gather(roots);       // (5)
    sort_level(roots);   // (6)
    return roots;
  }

  // (7) the inside of a thread's parentheses, appended to out. Without recursion: a
  // mailing list's reply chain is as deep as it is long.
  void write(int root, bool uid, std::string& out) const {
    struct Step {
      int node;           // a node to write, or -1: the piece
      const char* piece;
    };
    std::vector<Step> todo{{root, nullptr}};
    while (!todo.empty()) {
      Step step = todo.back();
      todo.pop_back();
      if (step.node < 0) {
        out += step.piece;
        continue;
      }
      const Node& node = nodes_[size_t(step.node)];
      if (node.msg >= 0) {
        const Item& it = items_[size_t(node.msg)];
        out += std::to_string(uid ? it.uid : it.seq);
        if (node.children.size() == 1) {  // one child: "a b", the chain goes on in the same list
          todo.push_back({node.children[0], nullptr});
          todo.push_back({-1, " "});
          continue;
        }
        if (!node.children.empty()) out += ' ';  // thread-nested: 2*thread-list, no space between
      }
      for (auto c = node.children.rbegin(); c != node.children.rend(); ++c) {
        todo.push_back({-1, ")"});
        todo.push_back({*c, nullptr});
        todo.push_back({-1, "("});
      }
    }
  }

 private:
  struct Node {
    int msg = -1;  // index into items_; -1: a dummy
    int parent = -1;
    std::vector<int> children;
  };

  int make() {
    nodes_.push_back(Node{});
    return int(nodes_.size() - 1);
  }
  int container(std::string_view id) {
    auto it = by_id_.find(id);
    if (it != by_id_.end()) return it->second;
    int n = make();
    by_id_.emplace(id, n);
    return n;
  }
  bool ancestor(int a, int of) const {  // is a an ancestor of `of` (or the same)?
    if (a != of && nodes_[size_t(a)].children.empty()) return false;  // no walk up a long chain for a leaf
    for (int n = of; n >= 0; n = nodes_[size_t(n)].parent)
      if (n == a) return true;
    return false;
  }
  void unlink(int c) {
    int p = nodes_[size_t(c)].parent;
    if (p < 0) return;
    auto& ch = nodes_[size_t(p)].children;
    ch.erase(std::find(ch.begin(), ch.end(), c));
    nodes_[size_t(c)].parent = -1;
  }
  void link(int p, int c) {
    nodes_[size_t(c)].parent = p;
    nodes_[size_t(p)].children.push_back(c);
  }

  void place(int i) {
    const SortKeys& k = *items_[size_t(i)].keys;
    int self = -1;
    // (1) its container: the one References made for its id, or a new one (no id,
    // or an id another message had already: each message has a container of its own)
    if (!k.message_id.empty()) {
      auto it = by_id_.find(k.message_id);
      if (it == by_id_.end()) self = container(k.message_id);
      else if (nodes_[size_t(it->second)].msg < 0) self = it->second;
    }
    if (self < 0) self = make();
    nodes_[size_t(self)].msg = i;
    // (1A) the references, each the parent of the next, existing links kept, no loops
    int prev = -1;
    for (auto& r : k.references) {
      int c = container(r);
      if (prev >= 0 && c != prev && nodes_[size_t(c)].parent < 0 && !ancestor(c, prev)) link(prev, c);
      prev = c;
    }
    // (1B) the last reference is the parent of the message (not a loop); no references: none
    unlink(self);
    if (prev >= 0 && prev != self && !ancestor(self, prev)) link(prev, self);
  }

  // Every node under `level`, each after all of its descendants (no recursion).
  std::vector<int> bottom_up(const std::vector<int>& level) const {
    std::vector<int> order, todo(level.begin(), level.end());
    while (!todo.empty()) {
      int n = todo.back();
      todo.pop_back();
      order.push_back(n);
      for (int c : nodes_[size_t(n)].children) todo.push_back(c);
    }
    std::reverse(order.begin(), order.end());
    return order;
  }

  // (4) every level pruned, the deepest first, then the roots
  void prune(std::vector<int>& roots) {
    for (int n : bottom_up(roots)) prune_level(nodes_[size_t(n)].children, false);
    prune_level(roots, true);
  }
  void prune_level(std::vector<int>& level, bool root) {
    std::vector<int> kept;
    for (int n : level) {
      Node& node = nodes_[size_t(n)];
      if (node.msg >= 0) {
        kept.push_back(n);
      } else if (node.children.empty()) {
        continue;  // (A) a dummy without children goes
      } else if (!root || node.children.size() == 1) {
        for (int c : node.children) {  // (B) its children take its place
          nodes_[size_t(c)].parent = node.parent;
          kept.push_back(c);
        }
        node.children.clear();
      } else {
        kept.push_back(n);  // a dummy at the root with several children stays
      }
    }
    level = std::move(kept);
  }

  // The subject of a thread -- a dummy's is its oldest child's (by sent date, then
  // sequence number) -- and whether it is a reply.
  const SortKeys& keys_of(int n) const {
    static const SortKeys none;
    const Node& node = nodes_[size_t(n)];
    if (node.msg >= 0) return *items_[size_t(node.msg)].keys;
    int oldest = -1;
    for (int c : node.children)
      if (oldest < 0 || when(c) < when(oldest)) oldest = c;
    return oldest < 0 ? none : keys_of(oldest);
  }
  bool dummy(int n) const { return nodes_[size_t(n)].msg < 0; }

  void gather(std::vector<int>& roots) {
    std::unordered_map<std::string_view, int> table;  // (A)
    for (int r : roots) {                         // (B)
      const std::string& s = keys_of(r).subject;
      if (s.empty()) continue;
      auto it = table.find(s);
      if (it == table.end()) table.emplace(s, r);
      else if ((dummy(r) && !dummy(it->second)) ||
               (!dummy(it->second) && keys_of(it->second).reply && !dummy(r) && !keys_of(r).reply))
        it->second = r;
    }
    std::vector<bool> gone(nodes_.size(), false);
    for (size_t i = 0; i < roots.size(); ++i) {  // (C)
      int r = roots[i];
      if (gone[size_t(r)]) continue;
      std::string_view s = keys_of(r).subject;
      if (s.empty()) continue;
      auto it = table.find(s);
      if (it == table.end() || it->second == r) continue;
      int t = it->second;
      if (dummy(t) && dummy(r)) {  // both dummies: r's children join t's
        for (int c : nodes_[size_t(r)].children) {
          nodes_[size_t(c)].parent = t;
          nodes_[size_t(t)].children.push_back(c);
        }
        nodes_[size_t(r)].children.clear();
        gone[size_t(r)] = true;
      } else if (dummy(t)) {  // the message joins the dummy
        link(t, r);
        gone[size_t(r)] = true;
      } else if (dummy(r)) {
        link(r, t);
        gone[size_t(t)] = true;
        it->second = r;
      } else if (!keys_of(t).reply && keys_of(r).reply) {  // a reply under the original
        link(t, r);
        gone[size_t(r)] = true;
      } else if (keys_of(t).reply && !keys_of(r).reply) {
        link(r, t);
        gone[size_t(t)] = true;
        it->second = r;
      } else {  // siblings under a new dummy, where the first of them stood
        int d = make();
        gone.push_back(false);
        std::replace(roots.begin(), roots.end(), t, d);
        link(d, t);
        link(d, r);
        gone[size_t(r)] = true;
        it->second = d;
      }
    }
    std::erase_if(roots, [&](int n) { return gone[size_t(n)]; });
  }

  // (6) siblings by sent date (a dummy: its first child's, after sorting), then
  // sequence number
  std::pair<int64_t, uint32_t> when(int n) const {
    const Node* node = &nodes_[size_t(n)];
    while (node->msg < 0 && !node->children.empty()) node = &nodes_[size_t(node->children[0])];
    if (node->msg < 0) return {0, 0};
    const Item& it = items_[size_t(node->msg)];
    return {it.date(), it.seq};
  }
  void sort_level(std::vector<int>& level) {  // the children of each node before the node's level
    auto by_when = [&](int a, int b) { return when(a) < when(b); };
    for (int n : bottom_up(level)) std::stable_sort(nodes_[size_t(n)].children.begin(), nodes_[size_t(n)].children.end(), by_when);
    std::stable_sort(level.begin(), level.end(), by_when);
  }

  std::vector<Item>& items_;
  std::vector<Node> nodes_;
  std::unordered_map<std::string_view, int> by_id_;  // views of the items' keys
};

}  // namespace

void Session::cmd_sort(Command& c, Output& out, bool uid) {
  // SORT [RETURN (options)] (criteria) charset search-key...   (RFC 5256, RFC 5267)
  auto& a = c.args;
  size_t i = 0;
  std::vector<std::string> ret;
  bool esort = false;
  if (i < a.size() && a[i].kind == Token::Kind::atom && iequals(a[i].value, "RETURN")) {
    if (i + 1 >= a.size() || a[i + 1].kind != Token::Kind::list) return bad(out, c.tag, "Bad RETURN options");
    for (auto& o : a[i + 1].items) {
      std::string r = to_upper(o.value);
      if (r != "MIN" && r != "MAX" && r != "ALL" && r != "COUNT")
        return bad(out, c.tag, "Unknown RETURN option: " + sanitize(o.value, 20));
      ret.push_back(r);
    }
    if (ret.empty()) ret = {"ALL"};
    esort = true;
    i += 2;
  }
  if (i + 2 >= a.size() || a[i].kind != Token::Kind::list || a[i].items.empty())
    return bad(out, c.tag, "Usage: SORT (criteria) charset search-keys");
  std::vector<std::pair<Key, bool>> criteria;  // key, reversed
  bool reverse = false, need_keys = false;
  for (auto& t : a[i].items) {
    std::string u = t.kind == Token::Kind::atom ? to_upper(t.value) : "";
    if (u == "REVERSE") {
      if (reverse) return bad(out, c.tag, "REVERSE twice");
      reverse = true;
      continue;
    }
    Key k;
    if (u == "ARRIVAL") k = Key::arrival;
    else if (u == "CC") k = Key::cc;
    else if (u == "DATE") k = Key::date;
    else if (u == "FROM") k = Key::from;
    else if (u == "SIZE") k = Key::size;
    else if (u == "SUBJECT") k = Key::subject;
    else if (u == "TO") k = Key::to;
    else return bad(out, c.tag, "Unknown sort criterion: " + sanitize(t.value, 20));
    need_keys |= k != Key::arrival && k != Key::size;
    criteria.emplace_back(k, reverse);
    reverse = false;
  }
  if (reverse) return bad(out, c.tag, "REVERSE needs a criterion after it");
  if (!known_charset(a[i + 1])) return no(out, c.tag, "[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset");
  std::vector<Token> keys(a.begin() + long(i + 2), a.end());
  std::vector<uint32_t> hits;
  bool used_modseq = false;
  std::string why;
  if (!search_hits(keys, hits, used_modseq, why)) return bad(out, c.tag, why);
  unsigned ranked = 0;
  for (auto [k, rev] : criteria)
    if (auto f = field_of(k)) ranked |= 1u << unsigned(*f);
  Found found;
  find(found, hits, *folder_, view_, need_keys, ranked);
  auto& items = found.items;
  auto cmp = [&](const Item& x, const Item& y) {
    for (auto [k, rev] : criteria) {
      int r = 0;
      auto three = [](const auto& p, const auto& q) { return p < q ? -1 : q < p ? 1 : 0; };
      if (auto f = field_of(k)) {  // a string: its rank in the folder when known, the same order
        size_t n = size_t(*f);
        r = found.ranks[n] ? three(x.rank[n], y.rank[n]) : field(*x.keys, *f).compare(field(*y.keys, *f));
      } else if (k == Key::arrival) {
        r = three(x.ref->internal_date, y.ref->internal_date);
      } else if (k == Key::size) {
        r = three(x.ref->size, y.ref->size);
      } else {
        r = three(x.sent, y.sent);
      }
      if (r) return rev ? r > 0 : r < 0;
    }
    return x.seq < y.seq;  // RFC 5256: ties by sequence number
  };
  std::sort(items.begin(), items.end(), cmp);
  std::string list;
  list.reserve(items.size() * 7);
  for (auto& it : items) {
    if (!list.empty()) list += ' ';
    list += std::to_string(uid ? it.uid : it.seq);
  }
  if (!esort) {
    out.bytes += "* SORT" + (list.empty() ? std::string() : " " + list) + "\r\n";
  } else {
    std::string line = "* ESEARCH (TAG \"" + c.tag + "\")" + (uid ? " UID" : "");
    auto value = [&](const Item& it) { return std::to_string(uid ? it.uid : it.seq); };
    for (auto& r : ret) {  // MIN and MAX: the first and the last in sort order (RFC 5267 3.1)
      if (r == "MIN" && !items.empty()) line += " MIN " + value(items.front());
      else if (r == "MAX" && !items.empty()) line += " MAX " + value(items.back());
      else if (r == "COUNT") line += " COUNT " + std::to_string(items.size());
      else if (r == "ALL" && !items.empty()) {
        // in sort order (the order matters): runs of consecutive numbers as a:b
        std::string all;
        for (size_t k = 0; k < items.size();) {
          size_t e = k + 1;
          auto num = [&](size_t j) { return uid ? items[j].uid : items[j].seq; };
          while (e < items.size() && num(e) == num(e - 1) + 1) ++e;
          all += (all.empty() ? "" : ",") + value(items[k]) + (e - k > 1 ? ":" + value(items[e - 1]) : std::string());
          k = e;
        }
        line += " ALL " + all;
      }
    }
    out.bytes += line + "\r\n";
  }
  report_changes(out, uid);
  tagged(out, c.tag, "OK", uid ? "UID SORT completed" : "SORT completed");
}

void Session::cmd_thread(Command& c, Output& out, bool uid) {
  // THREAD algorithm charset search-key...   (RFC 5256)
  auto& a = c.args;
  if (a.size() < 3 || a[0].kind != Token::Kind::atom) return bad(out, c.tag, "Usage: THREAD algorithm charset search-keys");
  std::string alg = to_upper(a[0].value);
  if (alg != "ORDEREDSUBJECT" && alg != "REFERENCES") return bad(out, c.tag, "Unknown threading algorithm");
  if (!known_charset(a[1])) return no(out, c.tag, "[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset");
  std::vector<Token> keys(a.begin() + 2, a.end());
  std::vector<uint32_t> hits;
  bool used_modseq = false;
  std::string why;
  if (!search_hits(keys, hits, used_modseq, why)) return bad(out, c.tag, why);
  Found found;
  find(found, hits, *folder_, view_, true, alg == "ORDEREDSUBJECT" ? 1u << unsigned(KeyField::subject) : 0);
  auto& items = found.items;
  auto id = [&](const Item& it) { return std::to_string(uid ? it.uid : it.seq); };
  std::string text;
  if (alg == "ORDEREDSUBJECT") {
    // (RFC 5256 3) by base subject, then sent date; each subject one thread, its first
    // message the parent of the others; threads by the date of their first message
    constexpr size_t subj = size_t(KeyField::subject);
    std::stable_sort(items.begin(), items.end(), [&](const Item& x, const Item& y) {
      if (found.ranks[subj] && x.rank[subj] != y.rank[subj]) return x.rank[subj] < y.rank[subj];
      if (int r = found.ranks[subj] ? 0 : x.keys->subject.compare(y.keys->subject)) return r < 0;
      if (x.date() != y.date()) return x.date() < y.date();
      return x.seq < y.seq;
    });
    std::vector<std::pair<size_t, size_t>> threads;  // [first, last) in items
    for (size_t k = 0; k < items.size();) {
      size_t e = k + 1;
      while (e < items.size() && items[e].keys->subject == items[k].keys->subject) ++e;
      threads.emplace_back(k, e);
      k = e;
    }
    std::stable_sort(threads.begin(), threads.end(), [&](auto& x, auto& y) {
      const Item &p = items[x.first], &q = items[y.first];
      return p.date() != q.date() ? p.date() < q.date() : p.seq < q.seq;
    });
    for (auto [k, e] : threads) {
      text += "(" + id(items[k]);
      if (e - k == 2) text += " " + id(items[k + 1]);
      else if (e - k > 2) {
        text += " ";
        for (size_t j = k + 1; j < e; ++j) text += "(" + id(items[j]) + ")";
      }
      text += ")";
    }
  } else {
    Threader t(items);
    for (int root : t.run()) {
      text += '(';
      t.write(root, uid, text);
      text += ')';
    }
  }
  out.bytes += "* THREAD" + (text.empty() ? std::string() : " " + text) + "\r\n";
  report_changes(out, uid);
  tagged(out, c.tag, "OK", uid ? "UID THREAD completed" : "THREAD completed");
}

}  // namespace bulwark::imap
