//! Wire forms of time: instants with seven fractional digits (as the Batch service writes them)
//! and ISO-8601 durations (`PT1H`, `P1D`, `P10675199DT2H48M5.4775807S` for "unlimited").

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// An instant, written `2026-11-21T07:00:00.1234567Z`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub DateTime<Utc>);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Self(Utc::now())
    }

    /// Ticks (100 ns units) since 0001-01-01, the unit of .NET-style ETags.
    pub fn ticks(self) -> u64 {
        const UNIX_EPOCH_TICKS: i64 = 621_355_968_000_000_000;
        let t = self.0.timestamp() * 10_000_000 + i64::from(self.0.timestamp_subsec_nanos() / 100);
        u64::try_from(t + UNIX_EPOCH_TICKS).unwrap_or(0)
    }

    /// RFC 1123, as in `Last-Modified`.
    pub fn rfc1123(self) -> String {
        self.0.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.0;
        // Every task write formats several: numbers, not a strftime pattern parsed each time.
        // (A leap second's nanoseconds run past 10^9; they stay within the second.)
        let fraction = t.nanosecond().min(999_999_999) / 100;
        if (0..=9999).contains(&t.year()) {
            write!(
                f,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{fraction:07}Z",
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        } else {
            write!(f, "{}.{fraction:07}Z", t.format("%Y-%m-%dT%H:%M:%S"))
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl de::Visitor<'_> for Text {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an ISO-8601 date-time")
            }
            // Parsed where it lies, not copied into a String first.
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Timestamp, E> {
                DateTime::parse_from_rfc3339(text)
                    .map(|t| Timestamp(t.with_timezone(&Utc)))
                    .map_err(|_| E::custom(format!("'{text}' is not an ISO-8601 date-time")))
            }
        }
        d.deserialize_str(Text)
    }
}

/// An ISO-8601 duration as the Batch service accepts it: `P[nD][T[nH][nM][n[.f]S]]` (weeks,
/// months and years are not used by the service). Keeps the caller's spelling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsoDuration {
    text: String,
    value: Duration,
}

/// `P10675199DT2H48M5.4775807S`: .NET's `TimeSpan.MaxValue`, the service's "unlimited".
pub const UNLIMITED: &str = "P10675199DT2H48M5.4775807S";

impl IsoDuration {
    /// Parses `text`; None when it is not a duration.
    pub fn parse(text: &str) -> Option<Self> {
        let value = parse_duration(text)?;
        Some(Self {
            text: text.to_owned(),
            value,
        })
    }

    /// The service's "unlimited".
    pub fn unlimited() -> Self {
        Self {
            text: UNLIMITED.to_owned(),
            value: Duration::from_secs(10_675_199 * 86_400 + 2 * 3600 + 48 * 60 + 5)
                + Duration::from_nanos(477_580_700),
        }
    }

    /// A duration of whole days.
    pub fn days(days: u64) -> Self {
        Self {
            text: format!("P{days}D"),
            value: Duration::from_secs(days * 86_400),
        }
    }

    /// `value` in the service's canonical spelling, e.g. `PT1M30.5S`, `P2DT3H`.
    pub fn from_std(value: Duration) -> Self {
        let total = value.as_secs();
        let (days, hours, minutes) = (total / 86_400, total % 86_400 / 3600, total % 3600 / 60);
        let seconds = total % 60;
        let fraction = value.subsec_nanos() / 100;
        let mut text = String::from("P");
        if days > 0 {
            text.push_str(&format!("{days}D"));
        }
        let mut time = String::new();
        if hours > 0 {
            time.push_str(&format!("{hours}H"));
        }
        if minutes > 0 {
            time.push_str(&format!("{minutes}M"));
        }
        if fraction > 0 {
            let f = format!("{fraction:07}");
            time.push_str(&format!("{seconds}.{}S", f.trim_end_matches('0')));
        } else if seconds > 0 || (days == 0 && time.is_empty()) {
            time.push_str(&format!("{seconds}S"));
        }
        if !time.is_empty() {
            text.push('T');
            text.push_str(&time);
        }
        Self { text, value }
    }

    /// The length.
    pub fn value(&self) -> Duration {
        self.value
    }

    /// The text as the caller wrote it.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

fn parse_duration(text: &str) -> Option<Duration> {
    let rest = text.strip_prefix('P')?;
    if rest.is_empty() {
        return None;
    }
    let (date, time) = match rest.split_once('T') {
        Some((_, "")) => return None,
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut total = Duration::ZERO;
    for (number, unit) in components(date)? {
        let secs_per = match unit {
            'D' => 86_400.0,
            'W' => 7.0 * 86_400.0,
            _ => return None,
        };
        total += Duration::try_from_secs_f64(number * secs_per).ok()?;
    }
    for (number, unit) in components(time.unwrap_or_default())? {
        let secs_per = match unit {
            'H' => 3600.0,
            'M' => 60.0,
            'S' => 1.0,
            _ => return None,
        };
        total += Duration::try_from_secs_f64(number * secs_per).ok()?;
    }
    Some(total)
}

/// Splits `1H30M` into `[(1, 'H'), (30, 'M')]`.
fn components(s: &str) -> Option<Vec<(f64, char)>> {
    let mut out = Vec::new();
    let mut number = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
        } else {
            if number.is_empty() {
                return None;
            }
            out.push((number.parse().ok()?, c));
            number.clear();
        }
    }
    number.is_empty().then_some(out)
}

impl Serialize for IsoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for IsoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text)
            .ok_or_else(|| de::Error::custom(format!("'{text}' is not an ISO-8601 duration")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let check = |text: &str, secs: Option<f64>| {
            assert_eq!(
                IsoDuration::parse(text).map(|d| d.value().as_secs_f64()),
                secs,
                "{text}"
            );
        };
        check("PT1H", Some(3600.0));
        check("P1D", Some(86_400.0));
        check("P1DT2H3M4.5S", Some(86_400.0 + 7200.0 + 180.0 + 4.5));
        check("PT0S", Some(0.0));
        check("P", None);
        check("PT", None);
        check("1H", None);
        check("PTH", None);
        check("PT1X", None);
        assert_eq!(
            IsoDuration::parse(UNLIMITED).map(|d| d.value().as_secs()),
            Some(IsoDuration::unlimited().value().as_secs())
        );
    }

    #[test]
    fn canonical_spelling() {
        let check = |secs: f64, text: &str| {
            let d = IsoDuration::from_std(Duration::from_secs_f64(secs));
            assert_eq!(d.as_str(), text);
            assert_eq!(IsoDuration::parse(text).map(|p| p.value()), Some(d.value()));
        };
        check(0.0, "PT0S");
        check(90.5, "PT1M30.5S");
        check(2.0 * 86_400.0 + 3.0 * 3600.0, "P2DT3H");
        check(86_400.0, "P1D");
    }

    #[test]
    fn timestamps_have_seven_digits() {
        let t = Timestamp(
            DateTime::parse_from_rfc3339("2016-11-21T22:43:31.4733476Z")
                .unwrap()
                .with_timezone(&Utc),
        );
        assert_eq!(t.to_string(), "2016-11-21T22:43:31.4733476Z");
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        let early = Timestamp(DateTime::from_timestamp(-62_135_596_800, 500).unwrap());
        assert_eq!(early.to_string(), "0001-01-01T00:00:00.0000005Z");
        let far = Timestamp(DateTime::from_timestamp(253_402_300_800, 0).unwrap());
        assert_eq!(far.to_string(), "+10000-01-01T00:00:00.0000000Z");
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
        assert!(serde_json::from_str::<Timestamp>("3").is_err());
        assert_eq!(t.rfc1123(), "Mon, 21 Nov 2016 22:43:31 GMT");
        assert!(t.ticks() > 0x8D0_0000_0000_0000);
    }
}
