//! Where callbacks may go. A callback URL is user input that makes this service send requests,
//! so every resolved address is checked: no loopback, private, link-local (the cloud metadata
//! address 169.254.169.254 among them), unique-local, multicast or otherwise special address,
//! in any of its IPv6 disguises, unless the deployment allow-lists that network.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;
use url::{Host, Url};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkPolicy {
    /// Networks that are allowed even though they are special (e.g. loopback in local mode).
    pub allow: Vec<IpNet>,
    /// Plain `http` callbacks are accepted when every address is inside `allow`.
    pub allow_http_to_allowed_nets: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackUrlError {
    #[error("is not a valid absolute URL")]
    Invalid,
    #[error("must use https")]
    NotHttps,
    #[error("must not carry credentials")]
    Credentials,
    #[error("points at {0}, a network callbacks may not reach")]
    Blocked(IpAddr),
}

impl NetworkPolicy {
    /// Parses a comma or space separated list of CIDRs (a bare address is a /32 or /128).
    pub fn parse_allow_list(text: &str) -> Result<Vec<IpNet>, String> {
        text.split([',', ' '])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                IpNet::from_str(s)
                    .or_else(|_| IpAddr::from_str(s).map(IpNet::from))
                    .map_err(|_| format!("`{s}` is not a CIDR"))
            })
            .collect()
    }

    fn allow_listed(&self, ip: IpAddr) -> bool {
        let canonical = canonical(ip);
        self.allow.iter().any(|net| net.contains(&ip) || net.contains(&canonical))
    }

    /// May a plain `http` callback connect to this (resolved) address? Only inside the
    /// allow-list, and only when the deployment accepts plain http at all.
    pub fn allows_plain_http(&self, ip: IpAddr) -> bool {
        self.allow_http_to_allowed_nets && self.allow_listed(ip)
    }

    /// Is a connection to this (resolved) address allowed?
    pub fn is_allowed(&self, ip: IpAddr) -> bool {
        self.allow_listed(ip) || is_public(ip)
    }

    /// Checks a callback URL's shape, and its host when the host is an IP literal. A host name
    /// must be resolved and each address passed to [`check_resolved`](Self::check_resolved).
    pub fn check_url(&self, url: &str) -> Result<Url, CallbackUrlError> {
        let url = Url::parse(url).map_err(|_| CallbackUrlError::Invalid)?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(CallbackUrlError::Credentials);
        }
        let ip = match url.host() {
            Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(Host::Domain(_)) => None,
            None => return Err(CallbackUrlError::Invalid),
        };
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http_to_allowed_nets => {
                // A name is judged after resolution (check_resolved); a literal right here.
                if let Some(ip) = ip
                    && !self.allow_listed(ip)
                {
                    return Err(CallbackUrlError::NotHttps);
                }
            }
            _ => return Err(CallbackUrlError::NotHttps),
        }
        if let Some(ip) = ip
            && !self.is_allowed(ip)
        {
            return Err(CallbackUrlError::Blocked(ip));
        }
        Ok(url)
    }

    /// Checks the addresses a callback host resolved to.
    pub fn check_resolved(&self, url: &Url, addrs: &[IpAddr]) -> Result<(), CallbackUrlError> {
        for &ip in addrs {
            if !self.is_allowed(ip) {
                return Err(CallbackUrlError::Blocked(ip));
            }
            if url.scheme() == "http" && !self.allow_listed(ip) {
                return Err(CallbackUrlError::NotHttps);
            }
        }
        Ok(())
    }
}

/// The IPv4 address an IPv6 address stands for, when it embeds one (mapped, compatible,
/// NAT64 well-known prefix, 6to4); otherwise the address itself.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4).unwrap_or(ip),
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let o = v6.octets();
    let tail = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    match s {
        // ::ffff:a.b.c.d (mapped)
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail),
        // ::a.b.c.d (deprecated compatible form; :: and ::1 are handled as themselves)
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(tail),
        // 64:ff9b::a.b.c.d (NAT64 well-known prefix)
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        // 2002:aabb:ccdd::/48 (6to4)
        [0x2002, ..] => Some(Ipv4Addr::new(o[2], o[3], o[4], o[5])),
        _ => None,
    }
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0                                   // "this network", incl. 0.0.0.0
        || a == 10                             // private
        || a == 127                            // loopback
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 169 && b == 254)              // link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b)) // private
        || (a == 192 && b == 0 && c == 0)      // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)      // documentation
        || (a == 192 && b == 88 && c == 99)    // 6to4 relay anycast
        || (a == 192 && b == 168)              // private
        || (a == 198 && (b == 18 || b == 19))  // benchmarking
        || (a == 198 && b == 51 && c == 100)   // documentation
        || (a == 203 && b == 0 && c == 113)    // documentation
        || a >= 224) // multicast, reserved, broadcast
}

/// Global unicast (2000::/3) only, less its special blocks. The rest of the space is special
/// (unspecified, loopback, IPv4-compatible, NAT64 local-use 64:ff9b:1::/48, discard-only
/// 100::/64, unique local, link-local, site-local, multicast) or not assigned to anyone, so a
/// block assigned later is refused until this list says otherwise. Embedded IPv4 forms
/// (mapped, NAT64 64:ff9b::/96, 6to4) are judged by their IPv4 address before this.
fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let special = match s[0] {
        // IETF protocol assignments 2001::/23 (Teredo, benchmarking, ORCHID); documentation 2001:db8::/32
        0x2001 => s[1] < 0x0200 || s[1] == 0x0db8,
        // documentation 3fff::/20
        0x3fff => s[1] < 0x1000,
        _ => false,
    };
    (s[0] & 0xe000) == 0x2000 && !special
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn special_ipv4_addresses_are_refused() {
        let p = NetworkPolicy::default();
        for s in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "127.0.0.1",
            "127.255.255.254",
            "100.64.0.1",
            "169.254.169.254",
            "169.254.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "198.51.100.1",
            "203.0.113.1",
            "224.0.0.1",
            "239.1.1.1",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!p.is_allowed(ip(s)), "{s}");
        }
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "172.15.0.1",
            "172.32.0.1",
            "100.63.0.1",
            "100.128.0.1",
            "169.253.1.1",
            "93.184.216.34",
            // The public neighbours of each refused block, in each octet its rule names.
            "1.0.0.1",
            "192.0.1.1",
            "192.1.0.1",
            "193.0.0.1",
            "1.0.2.1",
            "192.0.3.1",
            "192.1.2.1",
            "193.0.2.1",
            "1.88.99.1",
            "192.88.98.1",
            "192.89.99.1",
            "193.88.99.1",
            "1.168.0.1",
            "192.169.1.1",
            "193.168.1.1",
            "8.18.0.1",
            "198.17.0.1",
            "198.20.0.1",
            "199.18.0.1",
            "199.19.0.1",
            "8.51.100.1",
            "198.51.101.1",
            "198.52.100.1",
            "199.51.100.1",
            "1.0.113.1",
            "203.0.114.1",
            "203.1.113.1",
            "204.0.113.1",
            "1.2.3.4",
            "223.255.255.255",
        ] {
            assert!(p.is_allowed(ip(s)), "{s}");
        }
    }

    #[test]
    fn special_ipv6_addresses_and_disguised_ipv4_are_refused() {
        let p = NetworkPolicy::default();
        for s in [
            "::",
            "::1",
            "fe80::1",
            "fec0::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "::169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::127.0.0.1",
            "64:ff9b:1::1",
            "2002:a9fe:a9fe::1",
            "2002:7f00:1::",
            "2001::1",
            "100::1",
            // Beyond the list: the rest of IANA's special blocks, and what is assigned
            // to no one (outside 2000::/3).
            "::7f:1",
            "64:ff9a:1::1",
            "2001:2::1",
            "2001:10::1",
            "2001:1ff:ffff::1",
            "3fff::1",
            "3fff:fff:ffff::1",
            "5f00::1",
            "4000::1",
            "1fff:ffff::1",
            "e000::1",
        ] {
            assert!(!p.is_allowed(ip(s)), "{s}");
        }
        for s in [
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2a00:1450::1",
            // The public neighbours of the refused blocks.
            "2000::1",
            "2001:200::1",
            "2001:4860:4860::8888",
            "2001:db9::1",
            "2600::1",
            "2a00:1450:1::1",
            "3fff:1000::1",
            "3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            assert!(p.is_allowed(ip(s)), "{s}");
        }
    }

    #[test]
    fn the_allow_list_opens_networks_in_every_form() {
        let p = NetworkPolicy {
            allow: NetworkPolicy::parse_allow_list("127.0.0.0/8, ::1 10.1.0.0/16").unwrap(),
            allow_http_to_allowed_nets: true,
        };
        assert!(p.is_allowed(ip("127.0.0.1")));
        assert!(p.is_allowed(ip("::1")));
        assert!(p.is_allowed(ip("::ffff:127.0.0.1")));
        // The deprecated IPv4-compatible form is its IPv4 address too; `::1` is not 0.0.0.1.
        assert!(p.is_allowed(ip("::127.0.0.1")));
        let zero_net = NetworkPolicy { allow: NetworkPolicy::parse_allow_list("0.0.0.0/8").unwrap(), ..p.clone() };
        assert!(!zero_net.is_allowed(ip("::1")) && !zero_net.is_allowed(ip("::")));
        assert!(zero_net.is_allowed(ip("::ffff:0.0.0.1")));
        assert!(p.is_allowed(ip("10.1.2.3")));
        assert!(!p.is_allowed(ip("10.2.0.1")));
        assert!(!p.is_allowed(ip("169.254.169.254")));
        // Plain http: the allow-list only, never a public address.
        assert!(p.allows_plain_http(ip("127.0.0.1")));
        assert!(p.allows_plain_http(ip("::ffff:10.1.0.9")));
        assert!(!p.allows_plain_http(ip("8.8.8.8")));
        assert!(p.is_allowed(ip("8.8.8.8")));
        assert!(!p.allows_plain_http(ip("10.2.0.1")));
        let https_only = NetworkPolicy { allow_http_to_allowed_nets: false, ..p };
        assert!(!https_only.allows_plain_http(ip("127.0.0.1")));
        assert!(NetworkPolicy::parse_allow_list("nonsense").is_err());
        assert_eq!(NetworkPolicy::parse_allow_list("").unwrap(), vec![]);
    }

    #[test]
    fn callback_urls() {
        let strict = NetworkPolicy::default();
        assert!(strict.check_url("https://receiver.example.com/hooks").is_ok());
        assert_eq!(strict.check_url("http://receiver.example.com/hooks").unwrap_err(), CallbackUrlError::NotHttps);
        assert_eq!(strict.check_url("ftp://x/").unwrap_err(), CallbackUrlError::NotHttps);
        assert_eq!(strict.check_url("not a url").unwrap_err(), CallbackUrlError::Invalid);
        assert_eq!(strict.check_url("https://u:p@x.example/").unwrap_err(), CallbackUrlError::Credentials);
        assert_eq!(strict.check_url("https://u@x.example/").unwrap_err(), CallbackUrlError::Credentials);
        assert_eq!(strict.check_url("https://:p@x.example/").unwrap_err(), CallbackUrlError::Credentials);
        assert_eq!(
            strict.check_url("https://169.254.169.254/latest/meta-data").unwrap_err(),
            CallbackUrlError::Blocked(ip("169.254.169.254"))
        );
        assert_eq!(
            strict.check_url("https://[::ffff:a9fe:a9fe]/").unwrap_err(),
            CallbackUrlError::Blocked(ip("::ffff:a9fe:a9fe"))
        );
        // Decimal and hex IPv4 spellings are normalised by the URL parser before the check.
        assert_eq!(
            strict.check_url("https://2852039166/").unwrap_err(),
            CallbackUrlError::Blocked(ip("169.254.169.254"))
        );
        assert_eq!(strict.check_url("https://0x7f.1/").unwrap_err(), CallbackUrlError::Blocked(ip("127.0.0.1")));

        let local = NetworkPolicy {
            allow: NetworkPolicy::parse_allow_list("127.0.0.0/8,::1/128").unwrap(),
            allow_http_to_allowed_nets: true,
        };
        assert!(local.check_url("http://127.0.0.1:8080/cb").is_ok());
        assert!(local.check_url("http://[::1]:8080/cb").is_ok());
        assert_eq!(local.check_url("http://169.254.169.254/").unwrap_err(), CallbackUrlError::NotHttps);
        assert_eq!(local.check_url("http://8.8.8.8/").unwrap_err(), CallbackUrlError::NotHttps);
        let u = local.check_url("http://localhost:8080/").unwrap();
        assert!(local.check_resolved(&u, &[ip("127.0.0.1")]).is_ok());
        assert_eq!(local.check_resolved(&u, &[ip("8.8.8.8")]).unwrap_err(), CallbackUrlError::NotHttps);
        let u = local.check_url("https://metadata.example/").unwrap();
        assert_eq!(
            local.check_resolved(&u, &[ip("169.254.169.254")]).unwrap_err(),
            CallbackUrlError::Blocked(ip("169.254.169.254"))
        );
        assert!(local.check_resolved(&u, &[ip("8.8.8.8")]).is_ok());
    }
}
