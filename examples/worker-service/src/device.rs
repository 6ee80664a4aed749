//! Device details from a `User-Agent` header.
//!
//! Parsing is done by [Woothee](https://github.com/woothee/woothee-rust), whose dataset is
//! compiled in: no regex file to ship, a few microseconds per header.

use mongodb::bson::Document;
use woothee::parser::Parser;

/// `platform`, `platform_version`, `browser`, `browser_version` and `category` (`pc`,
/// `smartphone`, `mobilephone`, `crawler`, `appliance`, `misc`) for `user_agent`. Values the
/// parser cannot tell are left out; an unrecognized header gives an empty document.
///
/// ```
/// let info = worker_service::device::device_info(
///     "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
/// );
/// assert_eq!(info.get_str("browser").unwrap(), "Chrome");
/// assert_eq!(info.get_str("platform").unwrap(), "Windows 10");
/// ```
pub fn device_info(user_agent: &str) -> Document {
    let Some(parsed) = Parser::new().parse(user_agent) else {
        return Document::new();
    };
    let mut info = Document::new();
    for (field, value) in [
        ("platform", parsed.os),
        ("platform_version", parsed.os_version.as_ref()),
        ("browser", parsed.name),
        ("browser_version", parsed.version),
        ("category", parsed.category),
    ] {
        if !value.is_empty() && value != woothee::woothee::VALUE_UNKNOWN {
            info.insert(field, value);
        }
    }
    info
}

#[cfg(test)]
mod tests {
    use mongodb::bson::doc;

    use super::*;

    #[test]
    fn phones_and_crawlers_are_told_apart_and_garbage_gives_nothing() {
        let iphone = device_info(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
        );
        assert_eq!(iphone.get_str("platform").unwrap(), "iPhone");
        assert_eq!(iphone.get_str("category").unwrap(), "smartphone");
        assert_eq!(iphone.get_str("browser").unwrap(), "Safari");

        let bot = device_info("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)");
        assert_eq!(bot.get_str("category").unwrap(), "crawler");

        assert_eq!(device_info(""), doc! {});
        assert_eq!(device_info("\u{0}\u{1}not a browser"), doc! {});
    }
}
