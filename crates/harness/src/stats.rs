//! Figures over a sweep's results.

/// Median seeds-to-find from the failing seeds of a sweep starting at seed 0: the gaps between
/// consecutive failing seeds (the first counted from seed 0) are independent samples of "seeds
/// until the bug is found".
pub fn median_seeds_to_find(failing: &[u64]) -> Option<u64> {
    let mut prev = 0;
    let mut gaps: Vec<u64> = failing
        .iter()
        .map(|s| {
            let gap = s + 1 - prev;
            prev = s + 1;
            gap
        })
        .collect();
    gaps.sort_unstable();
    gaps.get(gaps.len() / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_seeds_to_find_uses_gaps() {
        // Failing seeds 4, 5, 9: gaps 5, 1, 4 -> median 4.
        assert_eq!(median_seeds_to_find(&[4, 5, 9]), Some(4));
        assert_eq!(median_seeds_to_find(&[0]), Some(1));
        assert_eq!(median_seeds_to_find(&[]), None);
    }
}
