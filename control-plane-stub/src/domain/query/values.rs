//! Values of the language: registeredAt's dates, and how values order.

use std::cmp::Ordering;

/// `2018-06-18T22:28:28+00:00`, `…Z`, `…` (UTC) or `2018-06-18` (the day, UTC) → ms; the flag
/// says a date only was given.
pub(super) fn parse_time(v: &str) -> Option<(i64, bool)> {
    let num = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (date, rest) = match v.split_once('T') {
        Some((d, r)) => (d, Some(r)),
        None => (v, None),
    };
    let mut d = date.split('-');
    let (y, m, day) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    if d.next().is_some() || date.len() != 10 || !(1..=12).contains(&m) {
        return None;
    }
    if !(1..=days_in_month(y, m)).contains(&day) {
        return None;
    }
    let days = days_from_civil(y, m, day);
    let Some(rest) = rest else {
        return Some((days * 86_400_000, true));
    };
    let (clock, offset_s) = if let Some(c) = rest.strip_suffix('Z') {
        (c, 0)
    } else if let Some(k) = rest.rfind(['+', '-']) {
        let (c, off) = rest.split_at(k);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off[1..].split_once(':')?;
        let (oh, om) = (num(oh)?, num(om)?);
        if oh > 23 || om > 59 {
            return None;
        }
        (c, sign * (oh * 3600 + om * 60))
    } else {
        (rest, 0)
    };
    let clock = clock.split('.').next()?;
    let mut c = clock.split(':');
    let (h, mi, s) = (num(c.next()?)?, num(c.next()?)?, num(c.next()?)?);
    if c.next().is_some() || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset_s;
    Some((secs * 1000, false))
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Orders two values as numbers when both are plain numbers, as dotted versions when both are
/// (`1.9.0` < `1.14.5`), otherwise as strings.
pub(super) fn compare(a: &str, b: &str) -> Ordering {
    let plain = |s: &str| s.matches('.').count() <= 1;
    if plain(a) && plain(b) {
        if let (Ok(x), Ok(y)) = (a.parse::<f64>(), b.parse::<f64>()) {
            return x.partial_cmp(&y).unwrap_or(Ordering::Equal);
        }
    }
    compare_versions(a, b)
}

/// Versions part by part (`v` prefix and `-…`/`+…` suffixes ignored); strings otherwise.
pub(super) fn compare_versions(a: &str, b: &str) -> Ordering {
    let version = |s: &str| -> Option<Vec<u64>> {
        let s = s.strip_prefix('v').unwrap_or(s);
        let core = s.split(['-', '+']).next()?;
        core.split('.').map(|p| p.parse().ok()).collect()
    };
    match (version(a), version(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}
