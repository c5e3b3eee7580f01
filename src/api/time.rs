//! `ngx.now`, `ngx.time`, `ngx.update_time`, `ngx.today`, `ngx.localtime`, `ngx.utctime`,
//! `ngx.cookie_time`, `ngx.http_time`, `ngx.parse_http_time`. Like nginx, each worker caches the
//! time: every phase run and resume marks it stale, and the first of these calls in the run reads
//! the system clock, so they are cheap, stay constant while a script computes, and a run that
//! asks nothing of the time pays nothing. All work in every context.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use mlua::{Function, Lua, LuaString, Table, Value};

use super::add_function;

/// A worker's cached time, in milliseconds since the Unix epoch.
#[derive(Clone)]
pub(crate) struct Clock(Arc<AtomicU64>);

impl Clock {
    pub(crate) fn new() -> Clock {
        let clock = Clock(Arc::default());
        clock.update();
        clock
    }

    /// Reads the system clock into the cache (`ngx.update_time`).
    pub(crate) fn update(&self) -> u64 {
        // At least 1: 0 marks a stale cache.
        let millis = unix_millis().max(1);
        self.0.store(millis, Ordering::Relaxed);
        millis
    }

    /// A new run starts: the next read refreshes the cache.
    pub(crate) fn mark_stale(&self) {
        self.0.store(0, Ordering::Relaxed);
    }

    fn millis(&self) -> u64 {
        match self.0.load(Ordering::Relaxed) {
            0 => self.update(),
            millis => millis,
        }
    }

    fn seconds(&self) -> i64 {
        i64::try_from(self.millis() / 1000).unwrap_or(i64::MAX)
    }
}

/// Now, in milliseconds since the Unix epoch.
pub(crate) fn unix_millis() -> u64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}

/// The time functions work in every context: those without arguments go straight into `ngx`,
/// the others into `functions` (the prelude raises their argument errors).
pub(crate) fn register(lua: &Lua, ngx: &Table, functions: &Table, clock: &Clock) -> mlua::Result<()> {
    let cached = clock.clone();
    ngx.set("now", lua.create_function(move |_, ()| Ok(cached.millis() as f64 / 1000.0))?)?;
    let cached = clock.clone();
    ngx.set("time", lua.create_function(move |_, ()| Ok(cached.seconds()))?)?;
    let cached = clock.clone();
    ngx.set(
        "update_time",
        lua.create_function(move |_, ()| {
            cached.update();
            Ok(())
        })?,
    )?;
    // Lua's os.date formats with localtime_r (gmtime_r after "!"): local time without unsafe
    // code or a time zone database of our own.
    let os_date: Function = lua.globals().get::<Table>("os")?.get("date")?;
    let formats = [("today", "%Y-%m-%d"), ("localtime", "%Y-%m-%d %H:%M:%S"), ("utctime", "!%Y-%m-%d %H:%M:%S")];
    for (name, format) in formats {
        let (cached, date) = (clock.clone(), os_date.clone());
        ngx.set(name, lua.create_function(move |_, ()| date.call::<LuaString>((format, cached.seconds())))?)?;
    }
    add_function(lua, functions, "cookie_time", |_, seconds: Value| Ok(seconds_arg(&seconds).map(cookie_time)))?;
    add_function(lua, functions, "http_time", |_, seconds: Value| Ok(seconds_arg(&seconds).map(http_time)))?;
    add_function(lua, functions, "parse_http_time", |_, text: Value| {
        Ok(match text {
            Value::String(text) => Ok(parse_http_time(&text.as_bytes())),
            _ => Err("string argument only".to_string()),
        })
    })
}

/// The seconds `cookie_time`/`http_time` take: a number, its fraction dropped (a C `long`).
fn seconds_arg(value: &Value) -> Result<i64, String> {
    match value {
        Value::Integer(i) => Ok(*i),
        Value::Number(n) => Ok(*n as i64),
        _ => Err("number argument only".into()),
    }
}

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// A moment in UTC, as nginx's `ngx_gmtime` splits it.
struct Utc {
    year: i64,
    /// 0 for January.
    month: usize,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    /// 0 for Sunday.
    weekday: usize,
}

impl Utc {
    fn from_unix(seconds: i64) -> Utc {
        let days = seconds.div_euclid(86_400);
        let of_day = seconds.rem_euclid(86_400);
        // Days to the civil calendar, counting from 0000-03-01 so leap days end each cycle.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let day_of_era = z.rem_euclid(146_097);
        let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let shifted_month = (5 * day_of_year + 2) / 153;
        let month = if shifted_month < 10 { shifted_month + 2 } else { shifted_month - 10 };
        Utc {
            year: year_of_era + era * 400 + i64::from(month < 2),
            month: month as usize,
            day: day_of_year - (153 * shifted_month + 2) / 5 + 1,
            hour: of_day / 3600,
            minute: of_day / 60 % 60,
            second: of_day % 60,
            // 1970-01-01 was a Thursday.
            weekday: (days + 4).rem_euclid(7) as usize,
        }
    }
}

/// `Thu, 18-Nov-10 11:27:35 GMT`: nginx's cookie expiry format, with four-digit years after 2037.
pub(crate) fn cookie_time(seconds: i64) -> String {
    let t = Utc::from_unix(seconds);
    let year = if t.year > 2037 { format!("{}", t.year) } else { format!("{:02}", t.year % 100) };
    format!(
        "{}, {:02}-{}-{year} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[t.weekday], t.day, MONTHS[t.month], t.hour, t.minute, t.second
    )
}

/// `Thu, 18 Nov 2010 11:27:35 GMT`: the HTTP date format (RFC 1123).
pub(crate) fn http_time(seconds: i64) -> String {
    let t = Utc::from_unix(seconds);
    format!(
        "{}, {:02} {} {:4} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[t.weekday], t.day, MONTHS[t.month], t.year, t.hour, t.minute, t.second
    )
}

/// nginx's `ngx_parse_http_time`: RFC 1123 (`Thu, 18 Nov 2010 11:27:35 GMT`), RFC 850
/// (`Thursday, 18-Nov-10 11:27:35 GMT`) or asctime (`Thu Nov 18 11:27:35 2010`) dates to Unix
/// seconds. As nginx, it neither checks the weekday nor reads past the seconds (or the asctime
/// year); None for anything else, including impossible dates.
pub(crate) fn parse_http_time(text: &[u8]) -> Option<i64> {
    #[derive(Clone, Copy, PartialEq)]
    enum Format {
        Rfc822,
        Rfc850,
        Asctime,
    }
    const DAYS_IN_MONTH: [i64; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let at = |i: usize| text.get(i).copied().unwrap_or(0);
    let digit = |i: usize| at(i).is_ascii_digit().then(|| i64::from(at(i) - b'0'));
    let two = |i: usize| Some(digit(i)? * 10 + digit(i + 1)?);
    let left = |p: usize| text.len().saturating_sub(p);

    // The weekday ends with a comma (RFC 1123, RFC 850) or a space (asctime).
    let mut p = text.iter().position(|&b| b == b',' || b == b' ').unwrap_or(text.len());
    let mut format = (at(p) == b' ').then_some(Format::Asctime);
    p += 1;
    while at(p) == b' ' {
        p += 1;
    }
    if left(p) < 18 {
        return None;
    }
    let mut day = 0;
    if format.is_none() {
        day = two(p)?;
        p += 2;
        format = Some(match at(p) {
            b' ' if left(p) >= 18 => Format::Rfc822,
            b'-' => Format::Rfc850,
            _ => return None,
        });
        p += 1;
    }
    let format = format?;
    let month = match at(p) {
        b'J' if at(p + 1) == b'a' => 0,
        b'J' if at(p + 2) == b'n' => 5,
        b'J' => 6,
        b'F' => 1,
        b'M' if at(p + 2) == b'r' => 2,
        b'M' => 4,
        b'A' if at(p + 1) == b'p' => 3,
        b'A' => 7,
        b'S' => 8,
        b'O' => 9,
        b'N' => 10,
        b'D' => 11,
        _ => return None,
    };
    p += 3;
    let separator = match format {
        Format::Rfc822 => Some(b' '),
        Format::Rfc850 => Some(b'-'),
        Format::Asctime => None,
    };
    if separator.is_some_and(|separator| at(p) != separator) {
        return None;
    }
    p += 1;
    let mut year = 0;
    match format {
        Format::Rfc822 => {
            year = two(p)? * 100 + two(p + 2)?;
            p += 4;
        }
        Format::Rfc850 => {
            year = two(p)?;
            year += if year < 70 { 2000 } else { 1900 };
            p += 2;
        }
        Format::Asctime => {
            if at(p) == b' ' {
                p += 1;
            }
            day = digit(p)?;
            p += 1;
            if at(p) != b' ' {
                day = day * 10 + digit(p)?;
                p += 1;
            }
            if left(p) < 14 {
                return None;
            }
        }
    }
    if at(p) != b' ' {
        return None;
    }
    let hour = two(p + 1)?;
    let minute = (at(p + 3) == b':').then(|| two(p + 4)).flatten()?;
    let second = (at(p + 6) == b':').then(|| two(p + 7)).flatten()?;
    p += 9;
    if format == Format::Asctime {
        if at(p) != b' ' {
            return None;
        }
        year = two(p + 1)? * 100 + two(p + 3)?;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let valid_day = if month == 1 && day == 29 {
        year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
    } else {
        day <= DAYS_IN_MONTH[month]
    };
    if !valid_day {
        return None;
    }
    // Gauss' formula, with the year starting on March 1 so the leap day comes last.
    let (month, year) = if month < 2 { (month + 11, year - 1) } else { (month - 1, year) };
    let days =
        365 * year + year / 4 - year / 100 + year / 400 + 367 * month as i64 / 12 - 30 + day - 1 - 719_527 + 31 + 28;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_format_as_nginx() {
        assert_eq!(http_time(1_290_079_655), "Thu, 18 Nov 2010 11:27:35 GMT");
        assert_eq!(cookie_time(1_290_079_655), "Thu, 18-Nov-10 11:27:35 GMT");
        assert_eq!(cookie_time(2_145_918_955), "Fri, 01-Jan-2038 00:35:55 GMT");
        assert_eq!(http_time(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_time(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(http_time(-1), "Wed, 31 Dec 1969 23:59:59 GMT");
    }

    #[test]
    fn http_dates_parse_in_three_formats() {
        let parse = |s: &str| parse_http_time(s.as_bytes());
        assert_eq!(parse("Thu, 18 Nov 2010 11:27:35 GMT"), Some(1_290_079_655));
        assert_eq!(parse("Thursday, 18-Nov-10 11:27:35 GMT"), Some(1_290_079_655));
        assert_eq!(parse("Thu Nov 18 11:27:35 2010"), Some(1_290_079_655));
        assert_eq!(parse("Sun Nov  6 08:49:37 1994"), Some(784_111_777));
        assert_eq!(parse("Tue, 29 Feb 2000 00:00:00 GMT"), Some(951_782_400));
        assert_eq!(parse("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        for bad in [
            "",
            "Thu, Nov 18 2010 11:27:35 GMT",
            "Thu, 18 Nov 2010 24:00:00 GMT",
            "Mon, 29 Feb 2010 00:00:00 GMT",
            "Thu, 31 Apr 2010 00:00:00 GMT",
            "Thu, 18 Xyz 2010 11:27:35 GMT",
            "Thu, 18 Nov 2010 11.27:35 GMT",
            "Thu, 18 Nov",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
