// net/: the client's address as the policy layer sees it.
#pragma once
#include <asio/ip/address.hpp>

#include "core/ip.hpp"

namespace bulwark {

// From the address bytes, never from its text: an IPv6 peer may carry a scope id
// ("fe80::1%eth0") that no address parser accepts. IPv4 (also v4-mapped) is kept in
// the v4-mapped form, as IpAddress does everywhere.
inline IpAddress peer_ip(const asio::ip::address& a) {
  return a.is_v4() ? IpAddress::from_v4(a.to_v4().to_bytes()) : IpAddress::from_v6(a.to_v6().to_bytes());
}

}  // namespace bulwark
