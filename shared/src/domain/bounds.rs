//! The bounds of every number a request brings in, defined once. Inputs beyond them are refused
//! at the edge (422 naming the field), so the arithmetic over accepted values (rating, accrual,
//! totals of a ledger) stays far from `i64` overflow and exact in an `f64` (an XLSX cell, a
//! JavaScript number): every bound here is below 2^53.

use chrono::NaiveDate;

use super::tenancy::FieldError;

/// The largest amount of money (fen) anything accepts: 10^15 fen = 10 trillion yuan. Contract
/// values, progress, payments, expenditures, variations, subcontract shares, prices, credit notes
/// and invoice totals; also the bound of a ledger's column totals.
pub const MAX_AMOUNT_FEN: i64 = 1_000_000_000_000_000;

/// The largest count a request may state: 10^12 (messages included in a package, tier bounds,
/// plan-line quantities).
pub const MAX_COUNT: i64 = 1_000_000_000_000;

/// The most messages one usage event may report: 10^9. A period's sum over events stays within
/// `i64` for any number of events a store could hold.
pub const MAX_EVENT_QUANTITY: i64 = 1_000_000_000;

/// The first and last dates a business record (contract, ledger entry, subscription) may carry.
pub const FIRST_DATE: NaiveDate = match NaiveDate::from_ymd_opt(1970, 1, 1) {
    Some(d) => d,
    None => NaiveDate::MIN,
};
pub const LAST_DATE: NaiveDate = match NaiveDate::from_ymd_opt(2200, 12, 31) {
    Some(d) => d,
    None => NaiveDate::MAX,
};

/// `10^15` as the messages say it.
const AMOUNT_TEXT: &str = "10^15 fen (10 trillion yuan)";

/// An amount of money, `0 ..= MAX_AMOUNT_FEN`.
pub fn amount(field: &str, v: i64) -> Result<i64, FieldError> {
    if (0..=MAX_AMOUNT_FEN).contains(&v) {
        Ok(v)
    } else if v < 0 {
        Err(FieldError::new(
            field,
            "an amount in fen cannot be negative",
        ))
    } else {
        Err(FieldError::new(
            field,
            format!("{v} fen is more than the largest accepted amount, {AMOUNT_TEXT}"),
        ))
    }
}

/// A positive amount, `1 ..= MAX_AMOUNT_FEN`.
pub fn positive_amount(field: &str, v: i64) -> Result<i64, FieldError> {
    if v == 0 {
        return Err(FieldError::new(field, "must be positive"));
    }
    amount(field, v)
}

/// A signed amount (a change), `|v| ≤ MAX_AMOUNT_FEN`.
pub fn signed_amount(field: &str, v: i64) -> Result<i64, FieldError> {
    if v.unsigned_abs() <= MAX_AMOUNT_FEN.unsigned_abs() {
        Ok(v)
    } else {
        Err(FieldError::new(
            field,
            format!("{v} fen is beyond ±{AMOUNT_TEXT}"),
        ))
    }
}

/// A count, `0 ..= max`.
pub fn count(field: &str, v: i64, max: i64) -> Result<i64, FieldError> {
    if (0..=max).contains(&v) {
        Ok(v)
    } else {
        Err(FieldError::new(field, format!("must be 0 to {max}")))
    }
}

/// A date of a business record, `FIRST_DATE ..= LAST_DATE`.
pub fn date(field: &str, d: NaiveDate) -> Result<NaiveDate, FieldError> {
    if (FIRST_DATE..=LAST_DATE).contains(&d) {
        Ok(d)
    } else {
        Err(FieldError::new(
            field,
            format!("must lie between {FIRST_DATE} and {LAST_DATE}"),
        ))
    }
}

/// `v` as an `i64` if `|v| ≤ |limit|`.
fn within(v: i128, limit: i64) -> Option<i64> {
    if v.unsigned_abs() <= u128::from(limit.unsigned_abs()) {
        i64::try_from(v).ok()
    } else {
        None
    }
}

/// The sum of `values` if it lies within `±limit` (computed exactly, whatever the count).
pub fn sum_within(values: impl IntoIterator<Item = i64>, limit: i64) -> Option<i64> {
    within(values.into_iter().map(i128::from).sum::<i128>(), limit)
}

/// The sum of `values` for a report: exact, or clamped to the `i64` range when the values are so
/// many and so large that no `i64` holds it (a report answers; it never fails or wraps).
pub fn report_sum(values: impl IntoIterator<Item = i64>) -> i64 {
    let s: i128 = values.into_iter().map(i128::from).sum();
    i64::try_from(s).unwrap_or(if s < 0 { i64::MIN } else { i64::MAX })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_bounded_at_ten_trillion_yuan() {
        assert_eq!(amount("a", 0).unwrap(), 0);
        assert_eq!(amount("a", MAX_AMOUNT_FEN).unwrap(), MAX_AMOUNT_FEN);
        let e = amount("contract_value_fen", MAX_AMOUNT_FEN + 1).unwrap_err();
        assert_eq!(e.field, "contract_value_fen");
        assert!(e.message.contains("10 trillion yuan"), "{e}");
        assert!(amount("a", i64::MAX).is_err());
        assert!(amount("a", -1).unwrap_err().message.contains("negative"));
        assert!(amount("a", i64::MIN).is_err());
        assert!(positive_amount("a", 0).is_err());
        assert_eq!(positive_amount("a", 1).unwrap(), 1);
        assert_eq!(
            signed_amount("a", -MAX_AMOUNT_FEN).unwrap(),
            -MAX_AMOUNT_FEN
        );
        assert!(signed_amount("a", -MAX_AMOUNT_FEN - 1).is_err());
        assert!(signed_amount("a", i64::MIN).is_err());
        assert!(signed_amount("a", i64::MAX).is_err());
        // Every bound is exact in an f64.
        for b in [MAX_AMOUNT_FEN, MAX_COUNT, MAX_EVENT_QUANTITY] {
            assert!(b < 1 << 53);
            assert_eq!(b as f64 as i64, b);
        }
    }

    #[test]
    fn counts_and_dates() {
        assert_eq!(count("included", MAX_COUNT, MAX_COUNT).unwrap(), MAX_COUNT);
        assert!(count("included", MAX_COUNT + 1, MAX_COUNT).is_err());
        assert!(count("included", -1, MAX_COUNT).is_err());
        assert!(date("d", LAST_DATE).is_ok());
        assert!(date("d", LAST_DATE.succ_opt().unwrap()).is_err());
        assert!(date("d", FIRST_DATE.pred_opt().unwrap()).is_err());
        assert!(date("d", NaiveDate::MAX).is_err());
    }

    #[test]
    fn sums_never_overflow() {
        assert_eq!(
            sum_within([MAX_AMOUNT_FEN, -1], MAX_AMOUNT_FEN),
            Some(MAX_AMOUNT_FEN - 1)
        );
        assert_eq!(sum_within([MAX_AMOUNT_FEN, 1], MAX_AMOUNT_FEN), None);
        assert_eq!(sum_within([i64::MAX, i64::MAX], i64::MAX), None);
        assert_eq!(sum_within(vec![MAX_AMOUNT_FEN; 10_000], i64::MAX), None);
        assert_eq!(report_sum(vec![i64::MAX; 3]), i64::MAX);
        assert_eq!(report_sum(vec![i64::MIN; 3]), i64::MIN);
        assert_eq!(report_sum([i64::MAX, i64::MIN]), -1);
    }
}
