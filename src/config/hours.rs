//! Opening hours of a Live Chat action: `hours = { timezone = "Europe/Berlin",
//! open = ["mon-fri 08:00-18:00", "sat 10:00-14:00"] }`.
//!
//! Pure: parsing checks the written form, `is_open` answers for a given instant (the caller
//! passes the clock). Times are wall-clock times in the zone, so a window keeps its local
//! hours across daylight-saving changes; on the day clocks jump forward the skipped local
//! hour simply never occurs, and on the day they fall back the repeated hour counts twice.

use std::ops::Range;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::schema::Hours;

/// Minutes since local midnight; `24 * 60` is the end of the day.
type Minute = u16;

const END_OF_DAY: Minute = 24 * 60;

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// When a Live Chat action takes chats: half-open windows `[start, end)` of local time,
/// per weekday.
#[derive(Debug, Clone, PartialEq)]
pub struct OpeningHours {
    timezone: TimeZone,
    /// Index 0 is Monday.
    windows: [Vec<Range<Minute>>; 7],
}

impl OpeningHours {
    /// Checks and compiles `hours`; every bad part comes back with its span and a message.
    pub fn parse(hours: &Hours) -> Result<OpeningHours, Vec<(Range<usize>, String)>> {
        let mut errors = Vec::new();
        let name = hours.timezone.get_ref();
        let timezone = match TimeZone::get(name) {
            Ok(tz) => Some(tz),
            Err(_) => {
                errors.push((
                    hours.timezone.span(),
                    format!(
                        "unknown time zone `{name}`: write an IANA zone name like \
                         `Europe/Berlin`, `America/New_York` or `UTC`"
                    ),
                ));
                None
            }
        };
        let mut windows: [Vec<Range<Minute>>; 7] = Default::default();
        for entry in &hours.open {
            match parse_entry(entry.get_ref()) {
                Ok((days, window)) => {
                    for day in days {
                        windows[day].push(window.clone());
                    }
                }
                Err(message) => errors.push((entry.span(), message)),
            }
        }
        match timezone {
            Some(timezone) if errors.is_empty() => Ok(OpeningHours { timezone, windows }),
            _ => Err(errors),
        }
    }

    /// The zone the windows are read in.
    pub fn timezone(&self) -> &TimeZone {
        &self.timezone
    }

    /// Whether `at` falls into an opening window, read as local time in the zone.
    pub fn is_open(&self, at: Timestamp) -> bool {
        let local = at.to_zoned(self.timezone.clone());
        let day = local.weekday().to_monday_zero_offset() as usize;
        let minute = local.hour() as Minute * 60 + local.minute() as Minute;
        self.windows[day].iter().any(|w| w.contains(&minute))
    }
}

/// `mon-fri 08:00-18:00` → the weekdays (0 = Monday) and the window.
fn parse_entry(entry: &str) -> Result<(Vec<usize>, Range<Minute>), String> {
    let shape = || {
        format!(
            "invalid opening hours `{entry}`: write days and a time range, like \
             `mon-fri 08:00-18:00` or `sat 10:00-14:00`"
        )
    };
    let mut parts = entry.split_whitespace();
    let (Some(days), Some(times), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(shape());
    };
    let days = parse_days(days).ok_or_else(|| {
        format!(
            "invalid days `{days}` in `{entry}`: write one of mon, tue, wed, thu, fri, sat, \
             sun, or a range like `mon-fri`"
        )
    })?;
    let (start, end) = times.split_once('-').ok_or_else(shape)?;
    let bad_time =
        |t: &str| format!("invalid time `{t}` in `{entry}`: write HH:MM, from 00:00 to 24:00");
    let start_minute = parse_time(start).ok_or_else(|| bad_time(start))?;
    let end_minute = parse_time(end).ok_or_else(|| bad_time(end))?;
    if start_minute == END_OF_DAY {
        return Err(format!(
            "invalid opening hours `{entry}`: 24:00 can only end a range; write 00:00 for \
             the start of a day"
        ));
    }
    if start_minute >= end_minute {
        return Err(format!(
            "invalid opening hours `{entry}`: the start must be before the end; for hours \
             past midnight write two entries, like `fri 22:00-24:00` and `sat 00:00-02:00`"
        ));
    }
    Ok((days, start_minute..end_minute))
}

/// `wed` or `mon-fri`; a range may wrap past Sunday (`fri-mon`).
fn parse_days(text: &str) -> Option<Vec<usize>> {
    let day = |s: &str| DAYS.iter().position(|d| d.eq_ignore_ascii_case(s));
    match text.split_once('-') {
        None => Some(vec![day(text)?]),
        Some((first, last)) => {
            let (first, last) = (day(first)?, day(last)?);
            let count = (last + 7 - first) % 7 + 1;
            Some((0..count).map(|i| (first + i) % 7).collect())
        }
    }
}

/// `HH:MM`, two digits each, `00:00` to `24:00`.
fn parse_time(text: &str) -> Option<Minute> {
    let (h, m) = text.split_once(':')?;
    let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(h) || !two_digits(m) {
        return None;
    }
    let (h, m): (Minute, Minute) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) => Some(END_OF_DAY),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use toml::Spanned;

    fn hours(timezone: &str, open: &[&str]) -> Hours {
        let mut at = 100;
        Hours {
            timezone: Spanned::new(0..timezone.len(), timezone.to_string()),
            open: open
                .iter()
                .map(|s| {
                    let span = at..at + s.len();
                    at += 100;
                    Spanned::new(span, s.to_string())
                })
                .collect(),
        }
    }

    fn parse(timezone: &str, open: &[&str]) -> OpeningHours {
        OpeningHours::parse(&hours(timezone, open)).expect("valid hours")
    }

    fn errors(timezone: &str, open: &[&str]) -> Vec<(Range<usize>, String)> {
        OpeningHours::parse(&hours(timezone, open)).expect_err("invalid hours")
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn weekday_ranges_and_boundaries() {
        let h = parse("UTC", &["mon-fri 08:00-18:00", "sat 10:00-14:00"]);
        // 2024-06-03 is a Monday.
        assert!(!h.is_open(at("2024-06-03T07:59:59Z")));
        assert!(h.is_open(at("2024-06-03T08:00:00Z")));
        assert!(h.is_open(at("2024-06-03T17:59:59Z")));
        assert!(!h.is_open(at("2024-06-03T18:00:00Z")));
        assert!(
            h.is_open(at("2024-06-05T12:00:00Z")),
            "wednesday is in mon-fri"
        );
        assert!(
            h.is_open(at("2024-06-07T12:00:00Z")),
            "friday is in mon-fri"
        );
        assert!(
            !h.is_open(at("2024-06-08T09:59:00Z")),
            "saturday opens at 10"
        );
        assert!(h.is_open(at("2024-06-08T10:00:00Z")));
        assert!(!h.is_open(at("2024-06-08T14:00:00Z")));
        assert!(!h.is_open(at("2024-06-09T12:00:00Z")), "sunday is closed");
    }

    #[test]
    fn whole_days_and_wrapping_ranges() {
        let h = parse("UTC", &["sun 00:00-24:00", "fri-mon 22:00-24:00"]);
        // Sunday 2024-06-09, first and last minute; Monday just after midnight is closed.
        assert!(h.is_open(at("2024-06-09T00:00:00Z")));
        assert!(h.is_open(at("2024-06-09T23:59:59Z")));
        assert!(!h.is_open(at("2024-06-10T00:00:00Z")));
        // fri-mon wraps past Sunday: Friday, Saturday and Monday evenings, not Tuesday.
        assert!(h.is_open(at("2024-06-07T22:30:00Z")));
        assert!(h.is_open(at("2024-06-08T23:00:00Z")));
        assert!(h.is_open(at("2024-06-10T22:00:00Z")));
        assert!(!h.is_open(at("2024-06-11T22:00:00Z")));
    }

    #[test]
    fn windows_are_local_time_in_the_zone() {
        let h = parse("America/New_York", &["mon 09:00-17:00"]);
        // Monday 09:00 EDT is 13:00 UTC; at 12:00 UTC it is still 08:00 in New York.
        assert!(!h.is_open(at("2024-06-03T12:59:00Z")));
        assert!(h.is_open(at("2024-06-03T13:00:00Z")));
        // Tuesday 00:30 UTC is Monday 20:30 in New York: the weekday is the local one.
        let evening = parse("America/New_York", &["mon 20:00-21:00"]);
        assert!(evening.is_open(at("2024-06-04T00:30:00Z")));
    }

    #[test]
    fn daylight_saving_days_keep_local_hours() {
        // Europe/Berlin springs forward on Sunday 2024-03-31 at 02:00 (UTC+1 → UTC+2).
        let h = parse("Europe/Berlin", &["sat-sun 08:00-18:00", "sun 01:00-04:00"]);
        assert!(h.is_open(at("2024-03-30T07:00:00Z")), "Sat 08:00 CET");
        assert!(!h.is_open(at("2024-03-30T06:59:00Z")), "Sat 07:59 CET");
        assert!(h.is_open(at("2024-03-31T06:00:00Z")), "Sun 08:00 CEST");
        assert!(!h.is_open(at("2024-03-31T05:30:00Z")), "Sun 07:30 CEST");
        // 01:00-04:00 local spans the skipped hour: two real hours, 00:00Z to 02:00Z.
        assert!(h.is_open(at("2024-03-31T00:30:00Z")), "01:30 CET");
        assert!(h.is_open(at("2024-03-31T01:30:00Z")), "03:30 CEST");
        assert!(!h.is_open(at("2024-03-31T02:00:00Z")), "04:00 CEST");

        // It falls back on Sunday 2024-10-27 at 03:00: 02:00-03:00 local happens twice.
        let twice = parse("Europe/Berlin", &["sun 02:00-03:00"]);
        assert!(!twice.is_open(at("2024-10-26T23:59:00Z")), "01:59 CEST");
        assert!(twice.is_open(at("2024-10-27T00:30:00Z")), "02:30 CEST");
        assert!(twice.is_open(at("2024-10-27T01:30:00Z")), "02:30 CET");
        assert!(!twice.is_open(at("2024-10-27T02:00:00Z")), "03:00 CET");
    }

    #[test]
    fn no_entries_means_never_open() {
        let h = parse("UTC", &[]);
        assert!(!h.is_open(at("2024-06-03T12:00:00Z")));
    }

    #[test]
    fn days_are_case_insensitive_and_spacing_is_free() {
        let h = parse("UTC", &["  Mon-FRI   08:00-18:00 "]);
        assert!(h.is_open(at("2024-06-04T08:00:00Z")));
    }

    #[test]
    fn bad_zone_and_entries_are_reported_at_their_spans() {
        let errs = errors(
            "Europe/Berln",
            &[
                "mon-fri 08:00-18:00",
                "monday 08:00-18:00",
                "mon 18:00-08:00",
                "mon 8:00-18:00",
                "mon 08:00-24:01",
                "mon 24:00-24:00",
                "mon-fri",
                "mon 08:00-12:00 14:00-18:00",
                "mon-xyz 08:00-09:00",
                "mon 08:60-09:00",
            ],
        );
        let spans: Vec<usize> = errs.iter().map(|(span, _)| span.start).collect();
        assert_eq!(spans, vec![0, 200, 300, 400, 500, 600, 700, 800, 900, 1000]);
        assert!(
            errs[0].1.contains("unknown time zone `Europe/Berln`"),
            "{errs:?}"
        );
        assert!(errs[1].1.contains("invalid days `monday`"), "{errs:?}");
        assert!(
            errs[2].1.contains("start must be before the end"),
            "{errs:?}"
        );
        assert!(errs[3].1.contains("invalid time `8:00`"), "{errs:?}");
        assert!(errs[4].1.contains("invalid time `24:01`"), "{errs:?}");
        assert!(errs[5].1.contains("24:00 can only end a range"), "{errs:?}");
        assert!(
            errs[6].1.starts_with("invalid opening hours `mon-fri`"),
            "{errs:?}"
        );
        assert!(errs[7].1.starts_with("invalid opening hours"), "{errs:?}");
        assert!(errs[8].1.contains("invalid days `mon-xyz`"), "{errs:?}");
        assert!(errs[9].1.contains("invalid time `08:60`"), "{errs:?}");
    }
}
