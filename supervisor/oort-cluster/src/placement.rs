//! Which live node runs each rule: a pure function of the rules and the
//! nodes, so that every node computes the same answer from what it reads in
//! etcd, without a leader.
//!
//! Rendezvous (highest random weight) hashing: each rule ranks the nodes by a
//! hash of (rule id, node id) and goes to the first that can take it. That
//! keeps placement *stable*: a node that leaves gives up only its own rules,
//! and a node that joins takes only the rules that rank it first. Loads are
//! bounded so that counts stay balanced: no node takes more than
//! `ceil(rules × 1.25 / nodes)` rules (the bounded-loads variant of
//! consistent hashing), nor more than its `--capacity`, and a rule that asks
//! for labels goes only to nodes that carry them.

use std::collections::BTreeMap;

use crate::NodeRecord;

/// What a rule asks of the node that runs it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuleDemand {
    pub id: String,
    /// Labels the node must carry, with these values.
    pub labels: BTreeMap<String, String>,
}

/// How much above the average count a node may run, in quarters: 5/4.
const LOAD_BOUND_NUM: usize = 5;
const LOAD_BOUND_DEN: usize = 4;

/// The node each rule runs on (`None`: no live node can take it: none
/// carries its labels, or every such node is full), by rule id.
pub fn place(rules: &[RuleDemand], nodes: &[NodeRecord]) -> BTreeMap<String, Option<String>> {
    let mut placed = BTreeMap::new();
    if nodes.is_empty() {
        for r in rules {
            placed.insert(r.id.clone(), None);
        }
        return placed;
    }
    let bound = (rules.len() * LOAD_BOUND_NUM).div_ceil(nodes.len() * LOAD_BOUND_DEN).max(1);
    let mut load: BTreeMap<&str, usize> = nodes.iter().map(|n| (n.id.as_str(), 0)).collect();
    // Rules in id order: the same input gives the same placement on every node.
    let mut order: Vec<&RuleDemand> = rules.iter().collect();
    order.sort_by(|a, b| a.id.cmp(&b.id));
    for rule in order {
        let mut ranked: Vec<&NodeRecord> = nodes.iter().filter(|n| carries(n, &rule.labels)).collect();
        ranked.sort_by_key(|n| std::cmp::Reverse((weight(&rule.id, &n.id), n.id.clone())));
        let has_room = |n: &NodeRecord| n.capacity.is_none_or(|c| load[n.id.as_str()] < c as usize);
        // The bound keeps counts even; when every candidate is at it (labels
        // narrow the candidates), capacity alone decides.
        let chosen = ranked
            .iter()
            .copied()
            .find(|n| load[n.id.as_str()] < bound && has_room(n))
            .or_else(|| ranked.iter().copied().find(|n| has_room(n)));
        match chosen {
            Some(n) => {
                *load.get_mut(n.id.as_str()).expect("a listed node") += 1;
                placed.insert(rule.id.clone(), Some(n.id.clone()));
            }
            None => {
                placed.insert(rule.id.clone(), None);
            }
        }
    }
    placed
}

fn carries(node: &NodeRecord, labels: &BTreeMap<String, String>) -> bool {
    labels.iter().all(|(k, v)| node.labels.get(k) == Some(v))
}

/// A hash of (rule, node) that is the same on every node and every release:
/// FNV-1a over both ids, finished with SplitMix64's mixer.
fn weight(rule: &str, node: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in rule.bytes().chain([0xff]).chain(node.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str) -> NodeRecord {
        NodeRecord { id: id.into(), api_addr: String::new(), capacity: None, labels: BTreeMap::new(), registered_ms: 0 }
    }

    fn rules(n: usize) -> Vec<RuleDemand> {
        (0..n).map(|i| RuleDemand { id: format!("rule-{i:04}"), labels: BTreeMap::new() }).collect()
    }

    fn counts(placed: &BTreeMap<String, Option<String>>) -> BTreeMap<String, usize> {
        let mut c = BTreeMap::new();
        for n in placed.values().flatten() {
            *c.entry(n.clone()).or_default() += 1;
        }
        c
    }

    #[test]
    fn every_rule_is_placed_and_counts_stay_within_the_bound() {
        let nodes: Vec<NodeRecord> = ["a", "b", "c"].map(node).to_vec();
        let placed = place(&rules(300), &nodes);
        assert!(placed.values().all(Option::is_some));
        let c = counts(&placed);
        assert_eq!(c.values().sum::<usize>(), 300);
        assert!(c.values().all(|&n| n <= 125), "{c:?}");
        assert_eq!(place(&rules(300), &nodes), placed, "the same input, the same placement");
        let reversed: Vec<NodeRecord> = nodes.iter().rev().cloned().collect();
        assert_eq!(place(&rules(300), &reversed), placed, "the order nodes are listed in does not matter");
    }

    #[test]
    fn a_node_leaving_moves_only_its_rules_and_one_joining_takes_a_share() {
        let three: Vec<NodeRecord> = ["a", "b", "c"].map(node).to_vec();
        let before = place(&rules(300), &three);
        let two: Vec<NodeRecord> = ["a", "b"].map(node).to_vec();
        let after = place(&rules(300), &two);
        let moved_from_survivors =
            before.iter().filter(|(id, n)| n.as_deref() != Some("c") && after[*id] != **n).count();
        // The bound may shift a few rules of the survivors; far fewer than a rehash would.
        assert!(moved_from_survivors <= 30, "{moved_from_survivors} rules of a and b moved");
        let four: Vec<NodeRecord> = ["a", "b", "c", "d"].map(node).to_vec();
        let grown = place(&rules(300), &four);
        let moved = before.iter().filter(|(id, n)| grown[*id] != **n).count();
        let to_d = counts(&grown)["d"];
        assert!((50..=94).contains(&to_d), "the new node took {to_d}");
        assert!(moved <= to_d + 30, "{moved} rules moved for {to_d} taken by d");
    }

    #[test]
    fn capacity_and_labels_are_honoured() {
        let mut a = node("a");
        a.capacity = Some(10);
        let mut b = node("b");
        b.labels.insert("zone".into(), "east".into());
        let c = node("c");
        let mut demands = rules(100);
        for r in demands.iter_mut().take(20) {
            r.labels.insert("zone".into(), "east".into());
        }
        let placed = place(&demands, &[a.clone(), b.clone(), c.clone()]);
        assert!(placed.values().all(Option::is_some));
        for r in demands.iter().take(20) {
            assert_eq!(placed[&r.id].as_deref(), Some("b"), "{} asks for zone=east", r.id);
        }
        assert!(counts(&placed)["a"] <= 10);
        // Nobody carries the label: the rule waits, unplaced.
        let mut west = RuleDemand { id: "w".into(), labels: BTreeMap::new() };
        west.labels.insert("zone".into(), "west".into());
        assert_eq!(place(&[west.clone()], &[a.clone(), b, c])["w"], None);
        // Every node full: unplaced too.
        a.capacity = Some(0);
        assert_eq!(place(&rules(1), &[a])["rule-0000"], None);
        assert_eq!(place(&[west], &[])["w"], None);
    }
}
