//! Shared access signatures: parsing a token from the query, its string-to-sign for every
//! signed version (`sv`) the SDKs send, and its time, protocol and address checks.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use crate::request::Query;

/// A SAS token as found in a request's query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sas {
    /// `sv`: signed version; selects the string-to-sign format.
    pub version: String,
    /// `ss`: services (account SAS only).
    pub services: Option<String>,
    /// `srt`: resource types (account SAS only).
    pub resource_types: Option<String>,
    /// `sr`: signed resource (service SAS only): `b`, `c`, `bs`, `bv`, `d`.
    pub resource: Option<String>,
    /// `sp`: permissions.
    pub permissions: String,
    /// `st`: start.
    pub start: String,
    /// `se`: expiry.
    pub expiry: String,
    /// `sip`: allowed source address or range.
    pub ip: String,
    /// `spr`: allowed protocols.
    pub protocol: String,
    /// `si`: stored access policy id.
    pub identifier: String,
    /// `ses`: encryption scope.
    pub encryption_scope: String,
    /// `rscc`, `rscd`, `rsce`, `rscl`, `rsct`: response header overrides.
    pub overrides: [String; 5],
    /// `sig`: the signature.
    pub signature: String,
    /// The snapshot or version the request names (`snapshot=`/`versionid=`).
    pub snapshot_time: String,
}

/// Response headers a SAS may override, in `overrides` order.
pub const OVERRIDE_HEADERS: [&str; 5] = [
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-type",
];

impl Sas {
    /// The token in `query`, if it carries a signature.
    pub fn from_query(query: &Query) -> Option<Self> {
        let signature = query.get("sig")?.to_owned();
        let get = |name: &str| query.get(name).unwrap_or_default().to_owned();
        Some(Self {
            version: get("sv"),
            services: query.get("ss").map(str::to_owned),
            resource_types: query.get("srt").map(str::to_owned),
            resource: query.get("sr").map(str::to_owned),
            permissions: get("sp"),
            start: get("st"),
            expiry: get("se"),
            ip: get("sip"),
            protocol: get("spr"),
            identifier: get("si"),
            encryption_scope: get("ses"),
            overrides: ["rscc", "rscd", "rsce", "rscl", "rsct"].map(get),
            signature,
            snapshot_time: query
                .get("snapshot")
                .or_else(|| query.get("versionid"))
                .unwrap_or_default()
                .to_owned(),
        })
    }

    /// Whether this is an account SAS (it names services and resource types).
    pub fn is_account_sas(&self) -> bool {
        self.services.is_some() || self.resource_types.is_some()
    }

    /// The account SAS string-to-sign.
    pub fn account_string_to_sign(&self, account: &str) -> String {
        let mut s = format!(
            "{account}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n",
            self.permissions,
            self.services.as_deref().unwrap_or_default(),
            self.resource_types.as_deref().unwrap_or_default(),
            self.start,
            self.expiry,
            self.ip,
            self.protocol,
            self.version,
        );
        if self.version.as_str() >= "2020-12-06" {
            s.push_str(&self.encryption_scope);
            s.push('\n');
        }
        s
    }

    /// The service SAS string-to-sign for a container (`blob` = None) or blob resource.
    pub fn service_string_to_sign(
        &self,
        account: &str,
        container: &str,
        blob: Option<&str>,
    ) -> String {
        let v = self.version.as_str();
        let mut resource = if v >= "2015-02-21" {
            format!("/blob/{account}/{container}")
        } else {
            format!("/{account}/{container}")
        };
        if let Some(blob) = blob {
            resource.push('/');
            resource.push_str(blob);
        }
        let mut fields: Vec<&str> = vec![
            &self.permissions,
            &self.start,
            &self.expiry,
            &resource,
            &self.identifier,
        ];
        if v >= "2015-04-05" {
            fields.push(&self.ip);
            fields.push(&self.protocol);
        }
        fields.push(&self.version);
        if v >= "2018-11-09" {
            fields.push(self.resource.as_deref().unwrap_or_default());
            fields.push(&self.snapshot_time);
        }
        if v >= "2020-12-06" {
            fields.push(&self.encryption_scope);
        }
        if v >= "2013-08-15" {
            fields.extend(self.overrides.iter().map(String::as_str));
        }
        fields.join("\n")
    }
}

/// Parses a SAS or access-policy time: ISO 8601 UTC with or without seconds or fraction, or a
/// bare date.
pub fn parse_time(value: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Some(t.with_timezone(&Utc));
    }
    let trimmed = value.strip_suffix('Z').unwrap_or(value);
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(trimmed, format) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(trimmed, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// Whether `ip` falls within a `sip` value: one address or `low-high`.
pub fn ip_allowed(sip: &str, ip: std::net::IpAddr) -> bool {
    let parse = |s: &str| s.trim().parse::<std::net::IpAddr>().ok();
    match sip.split_once('-') {
        Some((low, high)) => match (parse(low), parse(high)) {
            (Some(low), Some(high)) => low <= ip && ip <= high,
            _ => false,
        },
        None => parse(sip) == Some(ip),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cobalt_model::{AccountKey, DEV_ACCOUNT_KEY};

    fn key() -> AccountKey {
        AccountKey::from_base64("devstoreaccount1", DEV_ACCOUNT_KEY).unwrap()
    }

    fn sas(query: &str) -> Sas {
        Sas::from_query(&Query::parse(Some(query)).unwrap()).unwrap()
    }

    #[test]
    fn v12_blob_sas_vector() {
        let s = sas(
            "se=2026-11-21T06%3A16%3A08Z&sp=r&sv=2026-10-06&sr=b&sig=BIqD8MvptFopspag9q8OellkytueYCW0xSE8tXwzTHM%3D",
        );
        let sts = s.service_string_to_sign("devstoreaccount1", "wirev12", Some("small.bin"));
        assert_eq!(
            sts,
            "r\n\n2026-11-21T06:16:08Z\n/blob/devstoreaccount1/wirev12/small.bin\n\n\n\n2026-10-06\nb\n\n\n\n\n\n\n"
        );
        assert!(key().verify(&sts, &s.signature));
    }

    #[test]
    fn v12_container_sas_vector() {
        // The signature arrives with `/` unencoded on some requests and `%2F` on others.
        for q in [
            "se=2026-11-21T06%3A16%3A08Z&sp=w&sv=2026-10-06&sr=c&sig=IUg3GHI7cvj%2BYbixCxDbz009%2Fj2rCiYqnrFPtRiby3Y%3D",
            "se=2026-11-21T06%3A16%3A08Z&sp=w&sv=2026-10-06&sr=c&sig=IUg3GHI7cvj%2BYbixCxDbz009/j2rCiYqnrFPtRiby3Y%3D",
        ] {
            let s = sas(q);
            assert!(key().verify(
                &s.service_string_to_sign("devstoreaccount1", "wirev12", None),
                &s.signature
            ));
        }
    }

    #[test]
    fn legacy_sas_vectors() {
        let s = sas(
            "se=2026-11-21T06%3A17%3A17Z&sp=r&sv=2019-02-02&sr=b&sig=tiWw6RmwuNv5h2%2BrHImQUQSIwV23ynkpBwu5dCCvAM0%3D",
        );
        assert!(key().verify(
            &s.service_string_to_sign("devstoreaccount1", "wirelegacy", Some("small.bin")),
            &s.signature
        ));
        let s = sas(
            "se=2026-11-21T06%3A17%3A17Z&sp=w&sv=2019-02-02&sr=c&sig=dn%2B%2F%2FECHE5L0TjPOvizF0dBxEEc%2BZuhZqefaEm0Ok0c%3D",
        );
        let sts = s.service_string_to_sign("devstoreaccount1", "wirelegacy", None);
        assert_eq!(
            sts,
            "w\n\n2026-11-21T06:17:17Z\n/blob/devstoreaccount1/wirelegacy\n\n\n\n2019-02-02\nc\n\n\n\n\n\n"
        );
        assert!(key().verify(&sts, &s.signature));
    }

    #[test]
    fn v12_account_sas_vector() {
        let s = sas(
            "comp=list&include=&se=2026-11-21T06%3A31%3A29Z&sp=rl&sv=2026-10-06&ss=b&srt=sco&sig=OLGMUVqRHS%2Bc9fqtqv0hGIVnjvNON6u%2Bvwl5nt1Wdsw%3D",
        );
        assert!(s.is_account_sas());
        let sts = s.account_string_to_sign("devstoreaccount1");
        assert_eq!(
            sts,
            "devstoreaccount1\nrl\nb\nsco\n\n2026-11-21T06:31:29Z\n\n\n2026-10-06\n\n"
        );
        assert!(key().verify(&sts, &s.signature));
    }

    #[test]
    fn older_versions_drop_fields() {
        let s = sas("sv=2017-04-17&sr=c&sp=rl&se=2030-01-01&sig=x");
        assert_eq!(
            s.service_string_to_sign("acct", "c", None),
            "rl\n\n2030-01-01\n/blob/acct/c\n\n\n\n2017-04-17\n\n\n\n\n"
        );
        // 2015-04-05, the oldest version of the current layout, with sip and spr filled in.
        let s = sas("sv=2015-04-05&sr=b&sp=r&se=2030-01-01&sip=127.0.0.1&spr=https&sig=x");
        assert_eq!(
            s.service_string_to_sign("acct", "c", Some("b")),
            "r\n\n2030-01-01\n/blob/acct/c/b\n\n127.0.0.1\nhttps\n2015-04-05\n\n\n\n\n"
        );
        let s = sas("sv=2015-04-05&ss=b&srt=o&sp=r&se=2030-01-01&spr=https,http&sig=x");
        assert_eq!(
            s.account_string_to_sign("acct"),
            "acct\nr\nb\no\n\n2030-01-01\n\nhttps,http\n2015-04-05\n"
        );
        let s = sas("sv=2013-08-15&sr=c&sp=r&se=2030-01-01&sig=x");
        assert_eq!(
            s.service_string_to_sign("acct", "c", None),
            "r\n\n2030-01-01\n/acct/c\n\n2013-08-15\n\n\n\n\n"
        );
        let s = sas("sv=2019-02-02&ss=b&srt=o&sp=r&se=2030-01-01&sig=x");
        assert_eq!(
            s.account_string_to_sign("acct"),
            "acct\nr\nb\no\n\n2030-01-01\n\n\n2019-02-02\n"
        );
    }

    #[test]
    fn times() {
        let t = |s| parse_time(s).map(|t| t.to_rfc3339());
        assert_eq!(
            t("2026-11-21T06:16:08Z").as_deref(),
            Some("2026-11-21T06:16:08+00:00")
        );
        assert_eq!(
            t("2026-11-21T06:16:08.1234567Z").as_deref(),
            Some("2026-11-21T06:16:08.123456700+00:00")
        );
        assert_eq!(
            t("2026-11-21T06:16Z").as_deref(),
            Some("2026-11-21T06:16:00+00:00")
        );
        assert_eq!(
            t("2026-11-21").as_deref(),
            Some("2026-11-21T00:00:00+00:00")
        );
        assert_eq!(t("yesterday"), None);
    }

    #[test]
    fn ips() {
        let ip = "127.0.0.5".parse().unwrap();
        assert!(ip_allowed("127.0.0.5", ip));
        assert!(ip_allowed("127.0.0.1-127.0.0.9", ip));
        assert!(!ip_allowed("10.0.0.1", ip));
        assert!(!ip_allowed("garbage", ip));
    }
}
