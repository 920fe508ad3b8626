//! Money.

use super::*;

/// `amount × bp / 10 000`, rounded half-up (away from zero) to the fen.
pub fn mul_bp_half_up(amount_fen: i64, bp: i64) -> Result<i64> {
    let v = round_half_up(
        i128::from(amount_fen) * i128::from(bp),
        i128::from(BP_PER_WHOLE),
    );
    i64::try_from(v).map_err(|_| SafetyFundError::Overflow)
}

/// `amount × bp / 10 000` rounded up to the fen (for non-negative amounts): the smallest whole-fen
/// amount that is at least the share, so `paid ≥ required` ⇔ `paid ≥ share` exactly.
pub fn mul_bp_ceil(amount_fen: i64, bp: i64) -> Result<i64> {
    let n = i128::from(amount_fen.max(0)) * i128::from(bp.max(0));
    let d = i128::from(BP_PER_WHOLE);
    let q = n / d + i128::from(n % d != 0);
    i64::try_from(q).map_err(|_| SafetyFundError::Overflow)
}

/// Planned fee of a project: `round_half_up(contract_value × rate_bp / 10 000)`.
pub fn planned_total_fen(contract_value_fen: i64, rate_bp: i64) -> Result<i64> {
    mul_bp_half_up(contract_value_fen, rate_bp)
}

/// A month's accrual (计提): `round_half_up(progress × rate_bp / 10 000)`.
pub fn accrual_fen(progress_fen: i64, rate_bp: i64) -> Result<i64> {
    mul_bp_half_up(progress_fen, rate_bp)
}

pub(super) fn check_amount(field: &'static str, amount_fen: i64, allow_zero: bool) -> Result<()> {
    let ok = if allow_zero {
        (0..=MAX_AMOUNT_FEN).contains(&amount_fen)
    } else {
        (1..=MAX_AMOUNT_FEN).contains(&amount_fen)
    };
    if ok {
        Ok(())
    } else {
        Err(SafetyFundError::InvalidAmount {
            field,
            amount_fen,
            expected: if allow_zero {
                "0 ..= 10^15 fen"
            } else {
                "1 ..= 10^15 fen"
            },
        })
    }
}

pub(super) fn add(a: i64, b: i64) -> Result<i64> {
    a.checked_add(b).ok_or(SafetyFundError::Overflow)
}

pub(super) fn sub(a: i64, b: i64) -> Result<i64> {
    a.checked_sub(b).ok_or(SafetyFundError::Overflow)
}
