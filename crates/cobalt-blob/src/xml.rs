//! XML bodies: parsing what clients send (block lists, ACLs, service properties) and the
//! small writer helpers the handlers use to build responses.

use quick_xml::Reader;
use quick_xml::events::Event;

use crate::error::{ErrorCode, StorageError, StorageResult};

/// Escapes text for an XML element or attribute.
pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(text)
}

/// The XML declaration every response body starts with.
pub const DECLARATION: &str = r#"<?xml version="1.0" encoding="utf-8"?>"#;

/// Appends `<name>text</name>`.
pub fn element(out: &mut String, name: &str, text: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    out.push_str(&escape(text));
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// Appends `<name>text</name>`, or `<name />` when `text` is empty.
pub fn element_or_empty(out: &mut String, name: &str, text: &str) {
    if text.is_empty() {
        out.push('<');
        out.push_str(name);
        out.push_str(" />");
    } else {
        element(out, name, text);
    }
}

/// Which list of a blob a `Put Block List` entry refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockListKind {
    /// `<Committed>`: the blob's committed list.
    Committed,
    /// `<Uncommitted>`: the blob's uncommitted list.
    Uncommitted,
    /// `<Latest>`: uncommitted if present, else committed.
    Latest,
}

fn invalid_xml() -> StorageError {
    StorageError::new(ErrorCode::InvalidXmlDocument)
}

/// Parses a `Put Block List` body into (kind, base64 block id) entries.
pub fn parse_block_list(body: &[u8]) -> StorageResult<Vec<(BlockListKind, String)>> {
    let mut reader = Reader::from_reader(body);
    let mut buf = Vec::new();
    let mut depth = 0usize;
    let mut seen_root = false;
    let mut current: Option<BlockListKind> = None;
    let mut text = String::new();
    let mut entries = Vec::new();
    loop {
        match reader
            .read_event_into(&mut buf)
            .map_err(|_| invalid_xml())?
        {
            Event::Start(e) => {
                depth += 1;
                let name = e.local_name();
                match (depth, name.as_ref()) {
                    (1, b"BlockList") if !seen_root => seen_root = true,
                    (2, b"Committed") => current = Some(BlockListKind::Committed),
                    (2, b"Uncommitted") => current = Some(BlockListKind::Uncommitted),
                    (2, b"Latest") => current = Some(BlockListKind::Latest),
                    _ => return Err(invalid_xml()),
                }
                text.clear();
            }
            Event::Empty(e) => {
                let name = e.local_name();
                match (depth, name.as_ref()) {
                    (0, b"BlockList") if !seen_root => seen_root = true,
                    // An empty id element is a block id of "", which is never valid.
                    (1, b"Committed" | b"Uncommitted" | b"Latest") => {
                        return Err(ErrorCode::InvalidBlockList.into());
                    }
                    _ => return Err(invalid_xml()),
                }
            }
            Event::Text(t) => {
                let decoded = t.decode().map_err(|_| invalid_xml())?;
                if current.is_some() {
                    text.push_str(&decoded);
                } else if !decoded.trim().is_empty() {
                    // Only whitespace may appear between elements.
                    return Err(invalid_xml());
                }
            }
            Event::GeneralRef(r) => {
                // Entity references such as &#x3D; inside a block id.
                let resolved = r
                    .resolve_char_ref()
                    .ok()
                    .flatten()
                    .map(String::from)
                    .or_else(|| {
                        let name = r.decode().ok()?;
                        quick_xml::escape::resolve_xml_entity(&name).map(String::from)
                    })
                    .ok_or_else(invalid_xml)?;
                text.push_str(&resolved);
            }
            Event::End(_) => {
                if depth == 2 {
                    let kind = current.take().ok_or_else(invalid_xml)?;
                    entries.push((kind, std::mem::take(&mut text).trim().to_owned()));
                }
                depth = depth.checked_sub(1).ok_or_else(invalid_xml)?;
            }
            Event::Eof => break,
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
            Event::CData(c) => text.push_str(&String::from_utf8_lossy(&c)),
        }
        buf.clear();
    }
    if !seen_root || depth != 0 {
        return Err(invalid_xml());
    }
    Ok(entries)
}

/// A stored access policy of a container (`<SignedIdentifier>`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SignedIdentifier {
    /// The policy id (`si` in a SAS), at most 64 characters.
    pub id: String,
    /// `<Start>`, ISO 8601, if set.
    pub start: Option<String>,
    /// `<Expiry>`, ISO 8601, if set.
    pub expiry: Option<String>,
    /// `<Permission>` letters, if set.
    pub permission: Option<String>,
}

/// Parses a `Set Container ACL` body. An empty body clears the policies.
pub fn parse_signed_identifiers(body: &[u8]) -> StorageResult<Vec<SignedIdentifier>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let mut reader = Reader::from_reader(body);
    let mut buf = Vec::new();
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut out: Vec<SignedIdentifier> = Vec::new();
    let mut text = String::new();
    loop {
        match reader
            .read_event_into(&mut buf)
            .map_err(|_| invalid_xml())?
        {
            Event::Start(e) => {
                let name = e.local_name().as_ref().to_vec();
                if path.len() == 1 && name == b"SignedIdentifier" {
                    out.push(SignedIdentifier::default());
                }
                path.push(name);
                text.clear();
            }
            Event::Empty(e)
                if path.is_empty() && e.local_name().as_ref() != b"SignedIdentifiers" =>
            {
                return Err(invalid_xml());
            }
            Event::Text(t) => text.push_str(&t.decode().map_err(|_| invalid_xml())?),
            Event::GeneralRef(r) => {
                let name = r.decode().map_err(|_| invalid_xml())?;
                text.push_str(quick_xml::escape::resolve_xml_entity(&name).unwrap_or(""));
            }
            Event::End(_) => {
                let value = std::mem::take(&mut text).trim().to_owned();
                let names: Vec<&[u8]> = path.iter().map(Vec::as_slice).collect();
                if let Some(current) = out.last_mut() {
                    match names.as_slice() {
                        [b"SignedIdentifiers", b"SignedIdentifier", b"Id"] => current.id = value,
                        [_, _, b"AccessPolicy", b"Start"] => current.start = Some(value),
                        [_, _, b"AccessPolicy", b"Expiry"] => current.expiry = Some(value),
                        [_, _, b"AccessPolicy", b"Permission"] => current.permission = Some(value),
                        _ => {}
                    }
                }
                if path.len() == 1 && path[0] != b"SignedIdentifiers" {
                    return Err(invalid_xml());
                }
                path.pop();
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !path.is_empty() {
        return Err(invalid_xml());
    }
    if out.len() > 5 {
        return Err(StorageError::new(ErrorCode::InvalidXmlDocument)
            .with_message("At most 5 signed identifiers are allowed."));
    }
    for id in &out {
        if id.id.is_empty() || id.id.len() > 64 {
            return Err(StorageError::new(ErrorCode::InvalidXmlDocument)
                .with_message("A signed identifier must be 1 to 64 characters long."));
        }
    }
    Ok(out)
}

/// Renders the `Get Container ACL` body.
pub fn write_signed_identifiers(ids: &[SignedIdentifier]) -> String {
    let mut out = String::from(DECLARATION);
    out.push_str("<SignedIdentifiers>");
    for id in ids {
        out.push_str("<SignedIdentifier>");
        element(&mut out, "Id", &id.id);
        out.push_str("<AccessPolicy>");
        if let Some(v) = &id.start {
            element(&mut out, "Start", v);
        }
        if let Some(v) = &id.expiry {
            element(&mut out, "Expiry", v);
        }
        if let Some(v) = &id.permission {
            element(&mut out, "Permission", v);
        }
        out.push_str("</AccessPolicy></SignedIdentifier>");
    }
    out.push_str("</SignedIdentifiers>");
    out
}

/// The settings of Set Service Properties, in the order Azure writes them.
const SERVICE_PROPERTY_SECTIONS: [&str; 7] = [
    "Logging",
    "HourMetrics",
    "MinuteMetrics",
    "Cors",
    "DefaultServiceVersion",
    "DeleteRetentionPolicy",
    "StaticWebsite",
];

/// The top-level elements of a well-formed `<root>` document, each as its name and its own
/// text (start tag to end tag, as sent). Anything else than such a document is an error.
fn sections(body: &[u8], root: &str) -> StorageResult<Vec<(String, String)>> {
    let mut reader = Reader::from_reader(body);
    let mut buf = Vec::new();
    let mut depth = 0u32;
    let mut root_seen = false;
    let mut sections = Vec::new();
    let mut open: Option<(String, usize)> = None;
    loop {
        let before = usize::try_from(reader.buffer_position()).map_err(|_| invalid_xml())?;
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|_| invalid_xml())?;
        let after = usize::try_from(reader.buffer_position()).map_err(|_| invalid_xml())?;
        let text = |from: usize| {
            std::str::from_utf8(&body[from..after])
                .map(str::to_owned)
                .map_err(|_| invalid_xml())
        };
        let name = |e: &quick_xml::events::BytesStart| {
            String::from_utf8(e.local_name().as_ref().to_vec()).map_err(|_| invalid_xml())
        };
        match event {
            Event::Start(e) => {
                match depth {
                    0 if root_seen || e.local_name().as_ref() != root.as_bytes() => {
                        return Err(invalid_xml());
                    }
                    0 => root_seen = true,
                    1 => open = Some((name(&e)?, before)),
                    _ => {}
                }
                depth += 1;
            }
            Event::Empty(e) => match depth {
                0 if root_seen || e.local_name().as_ref() != root.as_bytes() => {
                    return Err(invalid_xml());
                }
                0 => root_seen = true,
                1 => sections.push((name(&e)?, text(before)?)),
                _ => {}
            },
            Event::End(_) => {
                depth = depth.checked_sub(1).ok_or_else(invalid_xml)?;
                if depth == 1 {
                    let (name, from) = open.take().ok_or_else(invalid_xml)?;
                    sections.push((name, text(from)?));
                }
            }
            Event::Text(t) if depth <= 1 && !t.iter().all(u8::is_ascii_whitespace) => {
                return Err(invalid_xml());
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if root_seen && depth == 0 {
        Ok(sections)
    } else {
        Err(invalid_xml())
    }
}

/// Applies a Set Service Properties body to the stored document, as Azure does: each setting
/// the body has (`Logging`, `Cors`...) replaces the stored one whole, and every setting it
/// leaves out keeps its stored value. An empty `<Cors />` therefore removes all CORS rules.
pub fn merge_service_properties(stored: &str, update: &[u8]) -> StorageResult<String> {
    const ROOT: &str = "StorageServiceProperties";
    // What an older Cobalt stored was only checked for its root: should it not split into
    // settings, the request's settings start afresh rather than the account being stuck.
    let mut merged = sections(stored.as_bytes(), ROOT).unwrap_or_default();
    for (name, text) in sections(update, ROOT)? {
        match merged.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = text,
            None => merged.push((name, text)),
        }
    }
    // Known settings in Azure's order, then any others as they came.
    let rank = |name: &str| {
        SERVICE_PROPERTY_SECTIONS
            .iter()
            .position(|s| *s == name)
            .unwrap_or(SERVICE_PROPERTY_SECTIONS.len())
    };
    merged.sort_by_key(|(name, _)| rank(name));
    let mut out = format!("{DECLARATION}<{ROOT}>");
    for (_, text) in &merged {
        out.push_str(text);
    }
    out.push_str(&format!("</{ROOT}>"));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_list_parses_all_kinds() {
        let body = br#"<?xml version='1.0' encoding='utf-8'?>
<BlockList><Latest>QUFB</Latest><Committed>QkJC</Committed><Uncommitted>Q0ND&#x3D;</Uncommitted></BlockList>"#;
        let parsed = parse_block_list(body).unwrap();
        assert_eq!(
            parsed,
            vec![
                (BlockListKind::Latest, "QUFB".to_owned()),
                (BlockListKind::Committed, "QkJC".to_owned()),
                (BlockListKind::Uncommitted, "Q0ND=".to_owned()),
            ]
        );
        assert_eq!(parse_block_list(b"<BlockList/>").unwrap(), vec![]);
    }

    #[test]
    fn block_list_rejects_garbage() {
        for body in [
            &b"<BlockList><Latest>a</Latest>"[..],
            b"not xml",
            b"<Other><Latest>a</Latest></Other>",
            b"<BlockList><Latest><x/></Latest></BlockList>",
            b"",
        ] {
            assert!(
                parse_block_list(body).is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn signed_identifiers_round_trip() {
        let ids = vec![SignedIdentifier {
            id: "policy1".into(),
            start: Some("2026-01-01T00:00:00Z".into()),
            expiry: Some("2027-01-01T00:00:00Z".into()),
            permission: Some("rl".into()),
        }];
        let xml = write_signed_identifiers(&ids);
        assert_eq!(parse_signed_identifiers(xml.as_bytes()).unwrap(), ids);
        assert_eq!(parse_signed_identifiers(b"").unwrap(), vec![]);
        assert!(parse_signed_identifiers(b"<Nope/>").is_err());
        assert_eq!(
            parse_signed_identifiers(b"<SignedIdentifiers/>").unwrap(),
            vec![]
        );
        assert!(parse_signed_identifiers(b"<SignedIdentifiers>").is_err());
    }

    #[test]
    fn service_properties_merge_per_setting() {
        let stored = r#"<?xml version="1.0" encoding="utf-8"?><StorageServiceProperties><Logging><Version>1.0</Version></Logging><Cors><CorsRule><AllowedOrigins>*</AllowedOrigins></CorsRule></Cors><StaticWebsite><Enabled>false</Enabled></StaticWebsite></StorageServiceProperties>"#;
        // A body with only a new Logging keeps Cors and StaticWebsite; an empty Cors clears the rules.
        let update = br#"<?xml version='1.0' encoding='utf-8'?>
<StorageServiceProperties>
  <StaticWebsite><Enabled>true</Enabled></StaticWebsite>
  <Logging><Version>2.0</Version></Logging>
  <Cors />
</StorageServiceProperties>"#;
        assert_eq!(
            merge_service_properties(stored, update).unwrap(),
            r#"<?xml version="1.0" encoding="utf-8"?><StorageServiceProperties><Logging><Version>2.0</Version></Logging><Cors /><StaticWebsite><Enabled>true</Enabled></StaticWebsite></StorageServiceProperties>"#
        );
        // An empty body element changes nothing; a setting Azure adds later is kept.
        let same = merge_service_properties(stored, b"<StorageServiceProperties/>").unwrap();
        assert_eq!(same, stored);
        let later = merge_service_properties(
            stored,
            b"<StorageServiceProperties><Future>1</Future></StorageServiceProperties>",
        )
        .unwrap();
        assert!(
            later.ends_with("<Future>1</Future></StorageServiceProperties>"),
            "{later}"
        );
        // A stored document that does not split into settings does not block updates.
        let fixed = merge_service_properties(
            "<StorageServiceProperties>stray text</StorageServiceProperties>",
            b"<StorageServiceProperties><Cors /></StorageServiceProperties>",
        )
        .unwrap();
        assert!(
            fixed.ends_with("<StorageServiceProperties><Cors /></StorageServiceProperties>"),
            "{fixed}"
        );
    }

    #[test]
    fn service_properties_reject_other_documents() {
        let stored = "<StorageServiceProperties/>";
        for body in [
            &b"<Other/>"[..],
            b"<StorageServiceProperties>",
            b"<StorageServiceProperties><Logging></StorageServiceProperties>",
            b"<StorageServiceProperties>text</StorageServiceProperties>",
            b"<StorageServiceProperties/><StorageServiceProperties/>",
            b"",
            b"not xml",
        ] {
            assert!(
                merge_service_properties(stored, body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn kind() -> impl Strategy<Value = BlockListKind> {
        prop_oneof![
            Just(BlockListKind::Committed),
            Just(BlockListKind::Uncommitted),
            Just(BlockListKind::Latest)
        ]
    }

    proptest! {
        #[test]
        fn block_lists_round_trip(entries in prop::collection::vec((kind(), "[A-Za-z0-9+/=]{1,88}"), 0..40)) {
            let mut xml = String::from("<?xml version='1.0' encoding='utf-8'?>\n<BlockList>");
            for (kind, id) in &entries {
                let tag = match kind {
                    BlockListKind::Committed => "Committed",
                    BlockListKind::Uncommitted => "Uncommitted",
                    BlockListKind::Latest => "Latest",
                };
                xml.push_str(&format!("<{tag}>{}</{tag}>", escape(id)));
            }
            xml.push_str("</BlockList>");
            prop_assert_eq!(parse_block_list(xml.as_bytes()).unwrap(), entries);
        }

        #[test]
        fn block_list_parser_never_panics(body in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_block_list(&body);
            let _ = parse_signed_identifiers(&body);
            let _ = merge_service_properties("<StorageServiceProperties/>", &body);
        }

        #[test]
        fn signed_identifiers_round_trip(ids in prop::collection::vec(("[ -~]{1,64}", proptest::option::of("[a-z]{1,8}")), 0..5)) {
            let ids: Vec<SignedIdentifier> = ids
                .into_iter()
                .map(|(id, permission)| SignedIdentifier { id, start: None, expiry: Some("2030-01-01T00:00:00Z".into()), permission })
                .collect();
            // Surrounding whitespace in element text is trimmed by design.
            let trimmed: Vec<SignedIdentifier> = ids.iter().cloned().map(|mut i| { i.id = i.id.trim().to_owned(); i }).collect();
            prop_assume!(trimmed.iter().all(|i| !i.id.is_empty()));
            prop_assert_eq!(parse_signed_identifiers(write_signed_identifiers(&ids).as_bytes()).unwrap(), trimmed);
        }
    }
}
