//! Message conservation: what a receiver observably got, compared with what the workload says was
//! sent. Everything sent is delivered exactly once, in order, byte for byte.

use crate::Violation;
use simkit::At;

pub fn check_in_order(sent: &[Vec<u8>], received: &[Vec<u8>]) -> Vec<Violation> {
    check_received(sent, received, &[])
}

/// As [`check_in_order`], knowing where each message was received (`at[i]` for message `i`), so
/// a corrupted message points at its receipt; missing ones are told at the end of the run.
pub fn check_received(sent: &[Vec<u8>], received: &[Vec<u8>], positions: &[At]) -> Vec<Violation> {
    let mut out = Vec::new();
    for (i, (want, got)) in sent.iter().zip(received).enumerate() {
        if want != got {
            let at = want
                .iter()
                .zip(got)
                .position(|(a, b)| a != b)
                .unwrap_or(want.len().min(got.len()));
            let v = Violation::new(
                "conservation",
                format!("message {i} corrupted: first differing byte at {at} (sent {}, received {} bytes)", want.len(), got.len()),
            )
            .kind("corrupt-message")
            .object("messages");
            out.push(match positions.get(i) {
                Some(p) => v.at(*p),
                None => v,
            });
        }
    }
    if received.len() > sent.len() {
        out.push(
            Violation::new(
                "conservation",
                format!(
                    "{} messages received but only {} sent (duplicates or invention)",
                    received.len(),
                    sent.len()
                ),
            )
            .kind("extra-messages")
            .object("messages"),
        );
    } else if received.len() < sent.len() {
        out.push(
            Violation::new(
                "conservation",
                format!(
                    "{} of {} messages never delivered",
                    sent.len() - received.len(),
                    sent.len()
                ),
            )
            .kind("missing-messages")
            .object("messages"),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_loss_corruption_and_duplication() {
        let sent = vec![vec![1, 2], vec![3, 4]];
        assert!(check_in_order(&sent, &sent).is_empty());
        assert_eq!(check_in_order(&sent, &sent[..1]).len(), 1);
        let corrupted = vec![vec![1, 2], vec![3, 5]];
        assert!(
            check_in_order(&sent, &corrupted)[0]
                .message
                .contains("byte at 1")
        );
        let dup = vec![vec![1, 2], vec![3, 4], vec![3, 4]];
        assert!(
            check_in_order(&sent, &dup)[0]
                .message
                .contains("duplicates")
        );
    }
}
