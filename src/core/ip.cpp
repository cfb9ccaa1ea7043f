#include "core/ip.hpp"

#include <arpa/inet.h>

#include <cstring>

namespace bulwark {

bool IpAddress::is_v4() const {
  static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(bytes.data(), prefix, 12) == 0;
}

std::string IpAddress::str() const {
  char buf[INET6_ADDRSTRLEN];
  if (is_v4()) inet_ntop(AF_INET, bytes.data() + 12, buf, sizeof buf);
  else inet_ntop(AF_INET6, bytes.data(), buf, sizeof buf);
  return buf;
}

std::optional<IpAddress> IpAddress::parse(std::string_view s) {
  std::string str(s);
  IpAddress a;
  uint8_t v4[4];
  if (inet_pton(AF_INET, str.c_str(), v4) == 1) {
    a.bytes[10] = a.bytes[11] = 0xff;
    std::memcpy(a.bytes.data() + 12, v4, 4);
    return a;
  }
  if (inet_pton(AF_INET6, str.c_str(), a.bytes.data()) == 1) return a;
  return std::nullopt;
}

IpAddress IpAddress::from_v4(const std::array<uint8_t, 4>& b) {
  IpAddress a;
  a.bytes[10] = a.bytes[11] = 0xff;
  std::memcpy(a.bytes.data() + 12, b.data(), 4);
  return a;
}

IpAddress IpAddress::from_v6(const std::array<uint8_t, 16>& b) {
  IpAddress a;
  a.bytes = b;
  return a;
}

bool IpRange::is_everything() const {
  IpRange all4{*IpAddress::parse("0.0.0.0"), *IpAddress::parse("255.255.255.255")};
  IpAddress zero{};
  IpAddress ones;
  ones.bytes.fill(0xff);
  return (lo <= all4.lo && hi >= all4.hi) || (lo == zero && hi == ones);
}

std::optional<IpRange> parse_ip_range(std::string_view s, std::string* why) {
  auto fail = [&](const std::string& w) -> std::optional<IpRange> {
    if (why) *why = w;
    return std::nullopt;
  };
  if (s.empty()) return fail("empty element");
  if (size_t dash = s.find('-'); dash != std::string_view::npos) {
    auto lo = IpAddress::parse(s.substr(0, dash));
    auto hi = IpAddress::parse(s.substr(dash + 1));
    if (!lo || !hi) return fail("\"" + std::string(s) + "\" is not a range of two addresses (a-b)");
    if (lo->is_v4() != hi->is_v4()) return fail("range \"" + std::string(s) + "\" mixes IPv4 and IPv6");
    if (*hi < *lo) return fail("range \"" + std::string(s) + "\" ends before it starts");
    return IpRange{*lo, *hi};
  }
  if (size_t slash = s.find('/'); slash != std::string_view::npos) {
    auto base = IpAddress::parse(s.substr(0, slash));
    std::string_view len_s = s.substr(slash + 1);
    if (!base || len_s.empty() || len_s.size() > 3) return fail("\"" + std::string(s) + "\" is not a CIDR block");
    int len = 0;
    for (char c : len_s) {
      if (c < '0' || c > '9') return fail("\"" + std::string(s) + "\" is not a CIDR block");
      len = len * 10 + (c - '0');
    }
    int max = base->is_v4() ? 32 : 128;
    if (len > max) return fail("prefix length in \"" + std::string(s) + "\" is over " + std::to_string(max));
    int bits = base->is_v4() ? 96 + len : len;  // prefix bits in the 128-bit form
    IpRange r{*base, *base};
    for (int i = bits; i < 128; ++i) {
      uint8_t mask = uint8_t(0x80 >> (i % 8));
      r.lo.bytes[i / 8] &= uint8_t(~mask);
      r.hi.bytes[i / 8] |= mask;
    }
    if (r.lo != *base) return fail("\"" + std::string(s) + "\" has host bits set (did you mean " + r.lo.str() + "/" +
                                   std::string(len_s) + "?)");
    return r;
  }
  auto a = IpAddress::parse(s);
  if (!a) return fail("\"" + std::string(s) + "\" is not an IP address, CIDR block or range");
  return IpRange{*a, *a};
}

IpAddress limit_key(const IpAddress& a) {
  if (a.is_v4()) return a;
  IpAddress k = a;
  for (int i = 8; i < 16; ++i) k.bytes[i] = 0;
  return k;
}

}  // namespace bulwark

namespace bulwark {
namespace {
void flatten_one(const RawIpGroups& raw, const std::string& name, std::vector<std::string>& stack,
                 IpGroupMap& done) {
  if (done.count(name)) return;
  for (auto& s : stack)
    if (s == name) {
      std::string path;
      for (auto& p : stack) path += p + " -> ";
      throw std::invalid_argument(name + ": group references form a cycle (" + path + name + ")");
    }
  auto it = raw.find(name);
  if (it == raw.end()) throw std::invalid_argument(stack.back() + ": unknown group \"@" + name + "\"");
  stack.push_back(name);
  std::vector<IpRange> ranges;
  for (auto& el : it->second) {
    if (!el.empty() && el.front() == '@') {
      std::string ref = el.substr(1);
      flatten_one(raw, ref, stack, done);
      auto& sub = done.at(ref);
      ranges.insert(ranges.end(), sub.begin(), sub.end());
    } else {
      std::string why;
      auto r = parse_ip_range(el, &why);
      if (!r) throw std::invalid_argument(name + ": " + why);
      ranges.push_back(*r);
    }
  }
  stack.pop_back();
  done[name] = std::move(ranges);
}
}  // namespace

IpGroupMap flatten_ip_groups(const RawIpGroups& raw) {
  IpGroupMap done;
  for (auto& [name, _] : raw) {
    std::vector<std::string> stack;
    flatten_one(raw, name, stack, done);
  }
  return done;
}

}  // namespace bulwark
