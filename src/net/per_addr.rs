//! How many connections or sockets each client address holds open on this
//! node, so one address cannot take them all (`MESHI_MAX_CONNECTIONS_PER_ADDR`,
//! `MESHI_MAX_SOCKETS_PER_ADDR`).

use std::net::IpAddr;
use std::sync::Arc;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

#[derive(Default, Clone)]
pub struct CountsByAddr(Arc<DashMap<IpAddr, usize>>);

/// One connection or socket counted against its address until it drops.
pub struct Counted {
    counts: CountsByAddr,
    addr: IpAddr,
}

impl CountsByAddr {
    /// Counts one more for `addr`, unless it holds `cap` already
    /// (0 means no cap). The check and the count are one step, so racing
    /// upgrades cannot overshoot.
    pub fn admit(&self, addr: IpAddr, cap: usize) -> Option<Counted> {
        match self.0.entry(addr) {
            Entry::Occupied(mut open) => {
                if cap != 0 && *open.get() >= cap {
                    return None;
                }
                *open.get_mut() += 1;
            }
            Entry::Vacant(none) => {
                none.insert(1);
            }
        }
        Some(Counted {
            counts: self.clone(),
            addr,
        })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        // The entry goes with the address's last socket, so the map holds
        // only addresses with sockets open.
        self.counts.0.remove_if_mut(&self.addr, |_, open| {
            *open -= 1;
            *open == 0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_at_most_its_cap_and_gets_slots_back() {
        let counts = CountsByAddr::default();
        let addr: IpAddr = "198.51.100.4".parse().unwrap();
        let first = counts.admit(addr, 2).expect("first");
        let _second = counts.admit(addr, 2).expect("second");
        assert!(counts.admit(addr, 2).is_none());
        drop(first);
        assert!(counts.admit(addr, 2).is_some());
        assert!(counts.admit("198.51.100.5".parse().unwrap(), 2).is_some());
    }

    #[test]
    fn the_map_forgets_addresses_without_sockets() {
        let counts = CountsByAddr::default();
        let addr: IpAddr = "198.51.100.4".parse().unwrap();
        drop(counts.admit(addr, 0));
        assert!(counts.0.is_empty());
    }
}
