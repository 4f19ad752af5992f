//! Retention: which snapshots a keep policy keeps ([`policy`]), applied per
//! group of snapshots (host and profile by default, as restic groups by
//! host and paths), with the snapshots that must stay together: the two
//! sides of a `cairn run`, and a safety snapshot with the snapshot whose
//! restore it protects. Such a set is removed only when every member is.

pub mod policy;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::repo::id::ObjectId;
use crate::repo::snapshot::Snapshot;
use policy::{Item, Policy};

/// What snapshots are grouped by before the policy applies to each group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupBy {
    pub host: bool,
    pub profile: bool,
    pub paths: bool,
    pub tags: bool,
}

impl Default for GroupBy {
    fn default() -> Self {
        GroupBy {
            host: true,
            profile: true,
            paths: false,
            tags: false,
        }
    }
}

impl std::str::FromStr for GroupBy {
    type Err = String;

    /// `host,profile,paths,tags` in any combination; empty or `none` for one
    /// group of everything.
    fn from_str(s: &str) -> Result<GroupBy, String> {
        let mut g = GroupBy {
            host: false,
            profile: false,
            paths: false,
            tags: false,
        };
        for part in s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty() && *p != "none")
        {
            match part {
                "host" => g.host = true,
                "profile" => g.profile = true,
                "paths" => g.paths = true,
                "tags" => g.tags = true,
                other => {
                    return Err(format!(
                        "cannot group by {other:?} (host, profile, paths, tags or none)"
                    ))
                }
            }
        }
        Ok(g)
    }
}

/// The values a group shares; `None` for what it is not grouped by.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct GroupKey {
    pub hostname: Option<String>,
    pub profile: Option<String>,
    pub paths: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
}

impl GroupKey {
    fn of(s: &Snapshot, by: GroupBy) -> GroupKey {
        let r = &s.record;
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v.dedup();
            v
        };
        GroupKey {
            hostname: by.host.then(|| r.host.clone()),
            profile: by.profile.then(|| r.profile.clone().unwrap_or_default()),
            paths: by
                .paths
                .then(|| sorted(r.roots.iter().map(|root| root.path.lossy()).collect())),
            tags: by.tags.then(|| sorted(r.tags.clone())),
        }
    }

    /// `host laptop, profile go`, for the table's heading.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(h) = &self.hostname {
            parts.push(format!("host {h}"));
        }
        if let Some(p) = &self.profile {
            parts.push(if p.is_empty() {
                "no profile".into()
            } else {
                format!("profile {p}")
            });
        }
        if let Some(p) = &self.paths {
            parts.push(format!("paths {}", p.join(", ")));
        }
        if let Some(t) = &self.tags {
            parts.push(format!("tags [{}]", t.join(",")));
        }
        if parts.is_empty() {
            "all snapshots".into()
        } else {
            parts.join(", ")
        }
    }
}

/// What the policy does to one group, newest first.
#[derive(Debug)]
pub struct GroupPlan<'a> {
    pub key: GroupKey,
    /// Each kept snapshot with the rules that keep it.
    pub keep: Vec<(&'a Snapshot, Vec<String>)>,
    pub remove: Vec<&'a Snapshot>,
}

/// Applies `policy` to each group of `considered`; `all` is every snapshot
/// in the repository, so that a pair member not considered still holds its
/// partner. `now` says which snapshots lie in the future.
pub fn plan<'a>(
    considered: &'a [Snapshot],
    all: &[Snapshot],
    policy: &Policy,
    by: GroupBy,
    now: DateTime<Utc>,
) -> Vec<GroupPlan<'a>> {
    let mut groups: BTreeMap<GroupKey, Vec<&'a Snapshot>> = BTreeMap::new();
    for s in considered {
        groups.entry(GroupKey::of(s, by)).or_default().push(s);
    }
    let mut plans: Vec<GroupPlan<'a>> = groups
        .into_iter()
        .map(|(key, mut members)| {
            members.sort_by(|a, b| b.record.time.cmp(&a.record.time).then(a.id.cmp(&b.id)));
            let items: Vec<Item> = members
                .iter()
                .map(|s| Item {
                    time: s.record.time,
                    tags: &s.record.tags,
                })
                .collect();
            let mut plan = GroupPlan {
                key,
                keep: Vec::new(),
                remove: Vec::new(),
            };
            for (s, decision) in members.iter().zip(policy.apply(&items, now)) {
                match decision {
                    Some(reasons) => plan.keep.push((s, reasons)),
                    None => plan.remove.push(s),
                }
            }
            plan
        })
        .collect();
    keep_together(&mut plans, all);
    plans
}

/// Moves back to `keep` every removed snapshot one of whose partners stays.
fn keep_together(plans: &mut [GroupPlan], all: &[Snapshot]) {
    let partners = partners(all);
    let removed: std::collections::HashSet<ObjectId> =
        plans.iter().flat_map(|p| p.remove.iter().map(|s| s.id)).collect();
    for plan in plans.iter_mut() {
        let (stay, go): (Vec<_>, Vec<_>) = std::mem::take(&mut plan.remove).into_iter().partition(|s| {
            partners
                .get(&s.id)
                .is_some_and(|set| set.iter().any(|p| !removed.contains(p)))
        });
        plan.remove = go;
        for s in stay {
            let held_by: Vec<String> = partners[&s.id]
                .iter()
                .filter(|p| !removed.contains(p))
                .map(|p| p.short())
                .collect();
            plan.keep
                .push((s, vec![format!("kept together with {}", held_by.join(", "))]));
        }
        plan.keep
            .sort_by(|a, b| b.0.record.time.cmp(&a.0.record.time).then(a.0.id.cmp(&b.0.id)));
    }
}

/// For each snapshot in a set that must stay together, the other members:
/// the two sides of a `cairn run` (one `pair` value), and a safety
/// snapshot with the snapshot it restored, transitively.
pub fn partners(all: &[Snapshot]) -> HashMap<ObjectId, Vec<ObjectId>> {
    let ids: HashMap<ObjectId, usize> = all.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
    let mut parent: Vec<usize> = (0..all.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let join = |a: usize, b: usize, parent: &mut Vec<usize>| {
        let (ra, rb) = (root(parent, a), root(parent, b));
        parent[ra] = rb;
    };
    let mut by_pair: HashMap<&str, usize> = HashMap::new();
    for (i, s) in all.iter().enumerate() {
        if let Some(run) = &s.record.run {
            match by_pair.get(run.pair.as_str()) {
                Some(&j) => join(i, j, &mut parent),
                None => {
                    by_pair.insert(&run.pair, i);
                }
            }
        }
        if let Some(&j) = s.record.rollback.as_ref().and_then(|rb| ids.get(&rb.restores)) {
            join(i, j, &mut parent);
        }
    }
    let mut sets: HashMap<usize, Vec<ObjectId>> = HashMap::new();
    for (i, s) in all.iter().enumerate() {
        let r = root(&mut parent, i);
        sets.entry(r).or_default().push(s.id);
    }
    let mut out = HashMap::new();
    for members in sets.values().filter(|m| m.len() > 1) {
        for id in members {
            out.insert(*id, members.iter().filter(|m| *m != id).copied().collect());
        }
    }
    out
}

#[cfg(test)]
mod tests;
