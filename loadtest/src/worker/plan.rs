//! How a run is dealt out over its workers: which units of each part a
//! worker owns, the sockets and source addresses that makes, its share of
//! the options, and which of the provisioned users it gets.
//!
//! `connect` splits its sockets. The other scenarios check deliveries
//! between their sockets (the members of a room, the two sides of a pair,
//! a churn room's anchor and the churners passing through it), so they
//! split along those: each worker owns whole rooms with all of their
//! members and publishers, whole pairs, or whole churn rooms with their
//! anchors and a share of the churners, who join only the rooms of their
//! own worker. Every check so stays inside one process. `mixed` deals out
//! each of its parts that way, and a part with fewer units than there are
//! workers goes to the first workers only. Rates and the bound on churn
//! cycles are totals, shared in proportion. The parent registers the users
//! (and matches the pairs over REST) once, for every part.
//!
//! Everything here is arithmetic on options and counts; it must not start
//! a process, register a user or open a socket. So a split that cannot
//! work is refused before anything is spent on it, and every split can be
//! tested without a server.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::{bail, Context, Result};

use crate::ctx::{EnvOptions, Given};
use crate::scenario::{pairs, ChurnOpts, ConnectOpts, MixedOpts, PairsOpts, RoomsOpts, Scenario};
use crate::target;

/// Files a worker opens besides its sockets: stdio, the poller, `/proc`.
const FD_SLACK: u64 = 64;

/// Units of a scenario that no check spans (a socket, a room with its
/// members, a pair, a churn room with its anchor, a churner), each of
/// `sockets` sockets.
#[derive(Debug, Clone, Copy)]
pub(super) struct Units {
    pub(super) name: &'static str,
    pub(super) count: usize,
    pub(super) sockets: usize,
}

impl Units {
    fn new(name: &'static str, count: usize, sockets: usize) -> Units {
        Units {
            name,
            count,
            sockets,
        }
    }
}

/// The scenarios a run is made of: the mix's parts, or the one scenario.
pub(super) fn parts_of(scenario: &Scenario) -> Vec<Scenario> {
    match scenario {
        Scenario::Mixed(opts) => opts.parts(),
        _ => vec![scenario.clone()],
    }
}

/// The kinds of units one part divides into. They are dealt out together,
/// so a worker holds some of each kind or none: churners join only rooms
/// whose anchors are in their own process, and each churning worker needs
/// some of the run's cycles.
pub(super) fn units_of(part: &Scenario) -> Vec<Units> {
    match part {
        Scenario::Connect(o) => vec![Units::new("sockets", o.sockets, 1)],
        Scenario::Rooms(o) => vec![Units::new("rooms", o.rooms, o.members)],
        Scenario::Pairs(o) => vec![Units::new("pairs", o.pairs, 2)],
        Scenario::Churn(o) => vec![
            Units::new("churn rooms", o.rooms, 1),
            Units::new("churners", o.churners, 1),
            Units::new(
                "churn cycles (--max-cycles)",
                usize::try_from(o.max_cycles).unwrap_or(usize::MAX),
                0,
            ),
        ],
        // A mix is split part by part (see `parts_of`).
        Scenario::Mixed(_) => Vec::new(),
    }
}

/// Units `first..first + count` of one kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Slice {
    pub(super) first: usize,
    pub(super) count: usize,
}

/// One worker's part of the run.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Share {
    /// By part of the run, then by kind of its units: which are this
    /// worker's; empty for a part it has no share of.
    pub(super) slices: Vec<Vec<Slice>>,
    pub(super) sockets: usize,
    pub(super) sources: Vec<IpAddr>,
}

/// `total` over `over` workers as evenly as whole units go: the remainder
/// one more each to the first workers.
fn deal(total: usize, over: usize) -> Vec<usize> {
    (0..over)
        .map(|w| total / over + usize::from(w < total % over))
        .collect()
}

/// Deals each part's units out over the workers and gives each worker its
/// source addresses: every worker its own, so that no two compete for one
/// address's ephemeral ports.
///
/// Each part goes to every worker, unless `partial` (the parts of a mix),
/// when a part with fewer units than workers goes to the first ones.
pub(super) fn plan(
    options: &EnvOptions,
    targets_v4_loopback: bool,
    parts: &[Vec<Units>],
    partial: bool,
    hard_nofile: u64,
    ports_per_source: usize,
) -> Result<Vec<Share>> {
    let workers = options.workers;
    let mut slices = vec![vec![Vec::new(); parts.len()]; workers];
    let mut counts = vec![0usize; workers];
    let mut reached = 0;
    for (p, kinds) in parts.iter().enumerate() {
        let Some(fewest) = kinds.iter().min_by_key(|u| u.count) else {
            continue;
        };
        let over = if partial {
            workers.min(fewest.count)
        } else if fewest.count < workers {
            bail!(
                "{} {} cannot be shared by {workers} workers; use --workers {} or fewer",
                fewest.count,
                fewest.name,
                fewest.count
            );
        } else {
            workers
        };
        reached = reached.max(over);
        for kind in kinds {
            let mut first = 0;
            for (w, count) in deal(kind.count, over).into_iter().enumerate() {
                slices[w][p].push(Slice { first, count });
                counts[w] += count * kind.sockets;
                first += count;
            }
        }
    }
    if reached < workers {
        bail!(
            "no part of the run has enough whole units for {workers} workers to have a share \
             each; use --workers {} or fewer",
            reached.max(1)
        );
    }
    let sockets: usize = counts.iter().sum();
    let largest = counts.iter().copied().max().unwrap_or(0) as u64;
    if largest + FD_SLACK > hard_nofile {
        let fits = hard_nofile.saturating_sub(FD_SLACK).max(1) as usize;
        bail!(
            "each of {workers} workers would hold up to {largest} sockets, but a process may \
             open only {hard_nofile} files here; use --workers {} or more",
            sockets.div_ceil(fits)
        );
    }
    // Leave a tenth of the range to sockets of earlier runs still in
    // TIME_WAIT and to other programs.
    let ports = (ports_per_source * 9 / 10).max(1);
    let given = target::sources(
        &options.source_ips,
        options.sources,
        options.i_own_this_target,
    )?;
    let sources: Vec<Vec<IpAddr>> = if !given.is_empty() {
        if given.len() < workers {
            bail!(
                "--workers {workers} needs at least {workers} source addresses (one per worker) \
                 from --sources or --source-ip, or none at all, to give each worker its own \
                 127.0.0.x"
            );
        }
        (0..workers)
            .map(|w| given.iter().skip(w).step_by(workers).copied().collect())
            .collect()
    } else if targets_v4_loopback {
        let mut next = 1usize;
        let mut sources = Vec::with_capacity(workers);
        for &count in &counts {
            let take = count.div_ceil(ports).max(1);
            if next + take > 255 {
                bail!("the workers would need more source addresses than 127.0.0.1-254");
            }
            sources.push(
                (next..next + take)
                    .map(|n| IpAddr::V4(Ipv4Addr::new(127, 0, 0, n as u8)))
                    .collect(),
            );
            next += take;
        }
        sources
    } else {
        // Without IPv4 loopback targets there is no 127.0.0.x to bind to;
        // the kernel then picks ports per destination.
        vec![Vec::new(); workers]
    };
    let mut shares = Vec::with_capacity(workers);
    for (w, ((count, sources), slices)) in counts.into_iter().zip(sources).zip(slices).enumerate() {
        if !sources.is_empty() && count.div_ceil(sources.len()) > ports {
            bail!(
                "worker {w} would open {} sockets from each of its {} source addresses, more \
                 than the about {ports} ephemeral ports each has; give more --sources",
                count.div_ceil(sources.len()),
                sources.len()
            );
        }
        shares.push(Share {
            slices,
            sockets: count,
            sources,
        });
    }
    Ok(shares)
}

/// A worker's share of `part`, from its slices of the part's units: the
/// same options over fewer units, and rates and the cycle bound in
/// proportion, so that the workers' shares add up to the part.
fn share_of_part(part: &Scenario, slices: &[Slice]) -> Result<Scenario> {
    let part_of = |slice: &Slice, total: usize| slice.count as f64 / total.max(1) as f64;
    Ok(match (part, slices) {
        (Scenario::Connect(o), [sockets]) => Scenario::Connect(ConnectOpts {
            sockets: sockets.count,
            users: None,
            rate: o.rate * part_of(sockets, o.sockets),
            hold: o.hold,
        }),
        (Scenario::Rooms(o), [rooms]) => Scenario::Rooms(RoomsOpts {
            rooms: rooms.count,
            users: None,
            rate: o.rate * part_of(rooms, o.rooms),
            ..o.clone()
        }),
        (Scenario::Pairs(o), [pairs]) => Scenario::Pairs(PairsOpts {
            pairs: pairs.count,
            ..o.clone()
        }),
        (Scenario::Churn(o), [rooms, churners, cycles]) => Scenario::Churn(ChurnOpts {
            rooms: rooms.count,
            churners: churners.count,
            max_cycles: cycles.count as u64,
            ..o.clone()
        }),
        _ => bail!("{} cannot be shared that way", part.name()),
    })
}

/// The worker's share of the run: of its one scenario, or of each part of
/// its mix that the worker has some of.
pub(super) fn share_of(scenario: &Scenario, parts: &[Scenario], share: &Share) -> Result<Scenario> {
    let mut mine = Vec::new();
    for (part, slices) in parts.iter().zip(&share.slices) {
        if !slices.is_empty() {
            mine.push(share_of_part(part, slices)?);
        }
    }
    let Scenario::Mixed(opts) = scenario else {
        return mine.pop().context("a worker without a share");
    };
    // A mix does not run the parts it leaves at zero; their rates and
    // bounds are zero too, so the workers' options add up to the run's.
    let mut mixed = MixedOpts {
        idle: 0,
        idle_rate: 0.0,
        rooms: 0,
        rate: 0.0,
        pairs: 0,
        churners: 0,
        churn_rooms: 0,
        max_cycles: 0,
        ..opts.clone()
    };
    for part in mine {
        match part {
            Scenario::Connect(o) => {
                mixed.idle = o.sockets;
                mixed.idle_rate = o.rate;
            }
            Scenario::Rooms(o) => {
                mixed.rooms = o.rooms;
                mixed.rate = o.rate;
            }
            Scenario::Pairs(o) => mixed.pairs = o.pairs,
            Scenario::Churn(o) => {
                mixed.churners = o.churners;
                mixed.churn_rooms = o.rooms;
                mixed.max_cycles = o.max_cycles;
            }
            Scenario::Mixed(_) => bail!("a mix does not nest"),
        }
    }
    Ok(Scenario::Mixed(mixed))
}

/// The users the parent provisioned for one part of the run.
pub(super) enum Provisioned {
    /// Socket `i` of the part uses `tokens[i % len]`; for churn, the
    /// rooms' anchors come first, then the churners.
    Tokens(Vec<String>),
    Pairs(Vec<pairs::Matched>),
}

/// The tokens of `count` sockets from socket `first` of the run on, where
/// socket `i` of the run uses `tokens[i % len]`: as many as the worker's
/// socket `i` needs to use `given[i % given.len()]` and get the same user.
fn tokens_from(tokens: &[String], first: usize, count: usize) -> Vec<String> {
    let count = tokens.len().min(count);
    (0..count)
        .map(|i| tokens[(first + i) % tokens.len()].clone())
        .collect()
}

/// What the parent provisioned for a worker's slices of one part.
pub(super) fn given_for(
    part: &Scenario,
    slices: &[Slice],
    provisioned: &Provisioned,
) -> Result<Given> {
    let mut given = Given {
        first: slices.first().map_or(0, |s| s.first),
        ..Given::default()
    };
    match (part, slices, provisioned) {
        // Sockets keep the users they would have in one process.
        (Scenario::Connect(_), [sockets], Provisioned::Tokens(tokens)) => {
            given.tokens = tokens_from(tokens, sockets.first, sockets.count);
        }
        (Scenario::Rooms(opts), [rooms], Provisioned::Tokens(tokens)) => {
            given.tokens = tokens_from(
                tokens,
                rooms.first * opts.members,
                rooms.count * opts.members,
            );
        }
        (Scenario::Churn(opts), [rooms, churners, _], Provisioned::Tokens(tokens)) => {
            let churner = opts.rooms + churners.first;
            given.tokens = tokens[rooms.first..rooms.first + rooms.count]
                .iter()
                .chain(&tokens[churner..churner + churners.count])
                .cloned()
                .collect();
        }
        (Scenario::Pairs(_), [pairs], Provisioned::Pairs(matched)) => {
            for pair in &matched[pairs.first..pairs.first + pairs.count] {
                given.tokens.extend(pair.tokens.iter().cloned());
                given.conversations.push(pair.conversation.clone());
            }
        }
        _ => bail!("{}: provisioned for something else", part.name()),
    }
    Ok(given)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(workers: usize) -> EnvOptions {
        EnvOptions {
            workers,
            ..EnvOptions::default()
        }
    }

    fn sockets(count: usize) -> Vec<Vec<Units>> {
        vec![vec![Units::new("sockets", count, 1)]]
    }

    /// Plans `scenario` over `workers` on a machine with room to spare.
    fn plan_of(scenario: &Scenario, workers: usize) -> Result<(Vec<Scenario>, Vec<Share>)> {
        let parts = parts_of(scenario);
        let units: Vec<Vec<Units>> = parts.iter().map(units_of).collect();
        let partial = matches!(scenario, Scenario::Mixed(_));
        let shares = plan(&options(workers), true, &units, partial, 20_000, 28_232)?;
        Ok((parts, shares))
    }

    fn slices(share: &Share, part: usize) -> Vec<(usize, usize)> {
        share.slices[part]
            .iter()
            .map(|s| (s.first, s.count))
            .collect()
    }

    #[test]
    fn rooms_are_shared_whole_with_their_members() {
        let rooms = vec![vec![Units::new("rooms", 5, 20)]];
        let shares = plan(&options(2), true, &rooms, false, 20_000, 28_232).unwrap();
        assert_eq!(
            shares
                .iter()
                .map(|s| (slices(s, 0), s.sockets))
                .collect::<Vec<_>>(),
            vec![(vec![(0, 3)], 60), (vec![(3, 2)], 40)]
        );
        let err = plan(&options(6), true, &rooms, false, 20_000, 28_232).unwrap_err();
        assert!(
            err.to_string().contains("5 rooms cannot be shared"),
            "{err}"
        );
    }

    #[test]
    fn churners_go_with_rooms_of_their_own_worker_and_the_cycles_add_up() {
        let churn = Scenario::Churn(ChurnOpts {
            churners: 7,
            rooms: 3,
            max_cycles: 101,
            anchor_rate: 4.0,
            ..ChurnOpts::default()
        });
        let (parts, shares) = plan_of(&churn, 2).unwrap();
        assert_eq!(slices(&shares[0], 0), [(0, 2), (0, 4), (0, 51)]);
        assert_eq!(slices(&shares[1], 0), [(2, 1), (4, 3), (51, 50)]);
        // An anchor and the churners: one socket each.
        assert_eq!(shares[0].sockets, 2 + 4);
        assert_eq!(shares[1].sockets, 1 + 3);
        let mine: Vec<ChurnOpts> = shares
            .iter()
            .map(|share| match share_of(&churn, &parts, share).unwrap() {
                Scenario::Churn(opts) => opts,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(mine.iter().map(|o| o.max_cycles).sum::<u64>(), 101);
        assert!(mine.iter().all(|o| o.anchor_rate == 4.0));

        // Anchors first, then churners, each keeping its user of one
        // process: users 0-2 anchor the rooms, users 3-9 churn.
        let tokens: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        let given = given_for(
            &parts[0],
            &shares[1].slices[0],
            &Provisioned::Tokens(tokens),
        )
        .unwrap();
        assert_eq!(given.tokens, ["2", "7", "8", "9"]);
        assert_eq!(given.first, 2, "its rooms are named from the third on");

        for (churners, rooms, cycles, refused) in [
            (1, 3, 100, "1 churners cannot be shared"),
            (7, 1, 100, "1 churn rooms cannot be shared"),
            (7, 3, 1, "1 churn cycles (--max-cycles) cannot be shared"),
        ] {
            let churn = Scenario::Churn(ChurnOpts {
                churners,
                rooms,
                max_cycles: cycles,
                ..ChurnOpts::default()
            });
            let err = plan_of(&churn, 2).unwrap_err();
            assert!(err.to_string().contains(refused), "{err}");
        }
    }

    #[test]
    fn a_mix_deals_out_each_part_and_its_rates_add_up() {
        let scenario = Scenario::Mixed(MixedOpts {
            idle: 11,
            idle_rate: 900.0,
            rooms: 4,
            members: 5,
            publishers: 2,
            rate: 100.0,
            pairs: 5,
            churners: 6,
            churn_rooms: 2,
            max_cycles: 1_000,
            ..MixedOpts::default()
        });
        let (parts, shares) = plan_of(&scenario, 3).unwrap();
        assert_eq!(parts.len(), 4);
        let table: Vec<Vec<Vec<(usize, usize)>>> = shares
            .iter()
            .map(|share| (0..parts.len()).map(|p| slices(share, p)).collect())
            .collect();
        assert_eq!(
            table,
            [
                vec![
                    vec![(0, 4)],
                    vec![(0, 2)],
                    vec![(0, 2)],
                    vec![(0, 1), (0, 3), (0, 500)]
                ],
                vec![
                    vec![(4, 4)],
                    vec![(2, 1)],
                    vec![(2, 2)],
                    vec![(1, 1), (3, 3), (500, 500)]
                ],
                // Two churn rooms go to the first two workers, whole, and
                // their churners with them.
                vec![vec![(8, 3)], vec![(3, 1)], vec![(4, 1)], vec![]],
            ]
        );
        assert_eq!(shares[2].sockets, 3 + 5 + 2);

        let mine: Vec<MixedOpts> = shares
            .iter()
            .map(|share| match share_of(&scenario, &parts, share).unwrap() {
                Scenario::Mixed(opts) => opts,
                other => panic!("{other:?}"),
            })
            .collect();
        let sum = |f: fn(&MixedOpts) -> f64| mine.iter().map(f).sum::<f64>();
        assert_eq!(sum(|o| o.idle as f64), 11.0);
        assert!((sum(|o| o.idle_rate) - 900.0).abs() < 1e-9);
        assert!((sum(|o| o.rate) - 100.0).abs() < 1e-9);
        assert_eq!(sum(|o| o.pairs as f64), 5.0);
        assert_eq!(sum(|o| o.churners as f64), 6.0);
        assert_eq!(mine.iter().map(|o| o.max_cycles).sum::<u64>(), 1_000);
        assert_eq!(mine[2].churners, 0, "no churn without a room");
        assert_eq!(mine[2].parts().len(), 3);
        for share in &mine {
            Scenario::Mixed(share.clone()).validate().unwrap();
            assert_eq!((share.members, share.publishers), (5, 2));
        }

        let thin = Scenario::Mixed(MixedOpts {
            idle: 2,
            rooms: 1,
            pairs: 2,
            churners: 0,
            ..MixedOpts::default()
        });
        let err = plan_of(&thin, 3).unwrap_err();
        assert!(err.to_string().contains("--workers 2 or fewer"), "{err}");
    }

    #[test]
    fn a_share_that_breaks_a_rule_the_whole_keeps_is_refused() {
        // 1,500 churners fit 3 rooms of 500, not 750 in one room.
        let churn = Scenario::Churn(ChurnOpts {
            churners: 1_500,
            rooms: 3,
            ..ChurnOpts::default()
        });
        churn.validate().unwrap();
        let (parts, shares) = plan_of(&churn, 2).unwrap();
        let second = share_of(&churn, &parts, &shares[1]).unwrap();
        assert!(second.validate().is_err());
    }

    #[test]
    fn workers_keep_the_users_sockets_would_have_in_one_process() {
        let tokens: Vec<String> = (0..5).map(|i| i.to_string()).collect();
        let given = tokens_from(&tokens, 7, 8);
        assert_eq!(given, ["2", "3", "4", "0", "1"]);
        for i in 0..8 {
            assert_eq!(given[i % given.len()], tokens[(7 + i) % tokens.len()]);
        }
        assert_eq!(tokens_from(&tokens, 1, 2), ["1", "2"]);
    }

    fn v4(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
    }

    #[test]
    fn shares_are_equal_and_each_worker_has_its_own_sources() {
        let shares = plan(&options(6), true, &sockets(100_000), false, 20_000, 28_232).unwrap();
        assert_eq!(shares.len(), 6);
        assert_eq!(shares.iter().map(|s| s.sockets).sum::<usize>(), 100_000);
        assert_eq!(shares[0].sockets, 16_667);
        assert_eq!(shares[5].sockets, 16_666);
        assert_eq!(shares[1].slices[0][0].first, 16_667);
        for (w, share) in shares.iter().enumerate() {
            assert_eq!(share.sources, vec![v4(w as u8 + 1)]);
        }
    }

    #[test]
    fn a_share_over_one_address_s_ports_gets_more_addresses() {
        let shares = plan(&options(2), true, &sockets(60_000), false, 100_000, 28_232).unwrap();
        assert_eq!(shares[0].sources, vec![v4(1), v4(2)]);
        assert_eq!(shares[1].sources, vec![v4(3), v4(4)]);
    }

    #[test]
    fn given_sources_are_dealt_out_and_must_suffice() {
        let mut opts = options(2);
        opts.sources = 4;
        let shares = plan(&opts, true, &sockets(1000), false, 20_000, 28_232).unwrap();
        assert_eq!(shares[0].sources, vec![v4(1), v4(3)]);
        assert_eq!(shares[1].sources, vec![v4(2), v4(4)]);
        opts.sources = 1;
        let err = plan(&opts, true, &sockets(1000), false, 20_000, 28_232).unwrap_err();
        assert!(err.to_string().contains("source addresses"), "{err}");
    }

    #[test]
    fn a_share_over_the_file_limit_is_refused_with_a_way_out() {
        let err = plan(&options(2), true, &sockets(100_000), false, 20_000, 28_232).unwrap_err();
        assert!(err.to_string().contains("--workers 6"), "{err}");
        assert!(plan(&options(3), true, &sockets(2), false, 20_000, 28_232).is_err());
    }
}
