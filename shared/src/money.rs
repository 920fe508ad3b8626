//! Money: integer fen, rates in basis points, one rounding rule (half-up at the fen, halves away
//! from zero) and one way to show fen as yuan.

/// `numerator / denominator` rounded to the nearest integer, halves away from zero (half-up on
/// the magnitude). `denominator` must be positive (a non-positive one counts as 1).
pub fn round_half_up(numerator: i128, denominator: i128) -> i128 {
    let d = denominator.max(1);
    let q = numerator / d;
    let r = numerator % d;
    if 2 * r.abs() >= d {
        q + numerator.signum()
    } else {
        q
    }
}

/// Fen as yuan with two decimals: `123456 → "1234.56"`, `-5 → "-0.05"`.
pub fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let abs = fen.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_round_away_from_zero() {
        assert_eq!(round_half_up(5, 10), 1);
        assert_eq!(round_half_up(4, 10), 0);
        assert_eq!(round_half_up(-5, 10), -1);
        assert_eq!(round_half_up(-4, 10), 0);
        assert_eq!(round_half_up(15, 10), 2);
        assert_eq!(round_half_up(7, 1), 7);
        assert_eq!(
            round_half_up(i128::from(i64::MAX) * 10_000, 3),
            30_744_573_456_182_586_023_333
        );
    }
}
