#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark {

// An IP address as 16 bytes: IPv4 is kept in its v4-mapped IPv6 form
// (::ffff:a.b.c.d), so "1.2.3.4" and "::ffff:1.2.3.4" are the same address.
struct IpAddress {
  std::array<uint8_t, 16> bytes{};
  bool is_v4() const;
  std::string str() const;
  auto operator<=>(const IpAddress&) const = default;
  // Text form only: "fe80::1%eth0" (a scope id) is not an address here; a socket's
  // peer goes through from_v4/from_v6 with its bytes instead.
  static std::optional<IpAddress> parse(std::string_view s);
  static IpAddress from_v4(const std::array<uint8_t, 4>& b);
  static IpAddress from_v6(const std::array<uint8_t, 16>& b);
};

// An inclusive range of addresses; a single address, a CIDR block and "a-b" all
// become one.
struct IpRange {
  IpAddress lo, hi;
  bool contains(const IpAddress& a) const { return lo <= a && a <= hi; }
  bool is_everything() const;  // 0.0.0.0/0 or ::/0
};

// Parses one group element: "192.0.2.1", "2001:db8::/32", "10.0.0.5-10.0.0.50".
// Returns nullopt and fills `why` when malformed. "@name" references are not
// handled here.
std::optional<IpRange> parse_ip_range(std::string_view s, std::string* why = nullptr);

// The key per-IP limits are kept under: the address for IPv4, its /64 for IPv6 (one
// host usually owns a whole /64, so counting per address would let it multiply).
IpAddress limit_key(const IpAddress& a);

}  // namespace bulwark

#include <map>
#include <stdexcept>

namespace bulwark {

using RawIpGroups = std::map<std::string, std::vector<std::string>>;
using IpGroupMap = std::map<std::string, std::vector<IpRange>>;

// Resolves "@name" references into flat range lists. Throws std::invalid_argument
// naming the group and the problem (malformed element, unknown group, cycle).
IpGroupMap flatten_ip_groups(const RawIpGroups& raw);

}  // namespace bulwark
