//! The little of the Blob REST API the agent speaks as a client: blob URLs inside a container
//! URL (keeping its SAS), the List Blobs response, and the version header.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use quick_xml::Reader;
use quick_xml::events::Event as Xml;
use reqwest::Url;

/// The `x-ms-version` the agent sends to the Blob service.
pub(crate) const VERSION: &str = "2020-04-08";

/// What stays literal in a blob name put in a URL path (`/` separates virtual directories).
const BLOB_NAME: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// What stays literal in a query value.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `container_url` with `/{blob}` inserted before its query (the SAS).
pub(crate) fn blob_url(container_url: &str, blob: &str) -> Result<Url, String> {
    let mut url = parse(container_url)?;
    let path = format!(
        "{}/{}",
        url.path().trim_end_matches('/'),
        utf8_percent_encode(blob, BLOB_NAME)
    );
    url.set_path(&path);
    Ok(url)
}

/// The List Blobs URL of `container_url` for one page.
pub(crate) fn list_url(
    container_url: &str,
    prefix: Option<&str>,
    marker: Option<&str>,
) -> Result<Url, String> {
    let mut url = parse(container_url)?;
    let mut query = url.query().unwrap_or_default().to_owned();
    let mut add = |name: &str, value: &str| {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str(name);
        query.push('=');
        query.extend(utf8_percent_encode(value, QUERY_VALUE));
    };
    add("restype", "container");
    add("comp", "list");
    if let Some(prefix) = prefix.filter(|p| !p.is_empty()) {
        add("prefix", prefix);
    }
    if let Some(marker) = marker.filter(|m| !m.is_empty()) {
        add("marker", marker);
    }
    url.set_query(Some(&query));
    Ok(url)
}

fn parse(url: &str) -> Result<Url, String> {
    let parsed = Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    match parsed.scheme() {
        "http" | "https" => Ok(parsed),
        other => Err(format!("unsupported URL scheme '{other}'")),
    }
}

/// One page of List Blobs.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ListPage {
    /// The blob names, in order.
    pub names: Vec<String>,
    /// Where the next page starts, if there is one.
    pub next_marker: Option<String>,
}

/// Parses an `EnumerationResults` body. Names the service percent-encoded (`Encoded="true"`,
/// for characters XML cannot carry) are decoded.
pub(crate) fn parse_list(xml: &str) -> Result<ListPage, String> {
    let mut reader = Reader::from_str(xml);
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut text = String::new();
    let mut encoded = false;
    let mut page = ListPage::default();
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Xml::Start(e) => {
                encoded = e
                    .try_get_attribute("Encoded")
                    .ok()
                    .flatten()
                    .is_some_and(|a| a.value.as_ref() == b"true");
                path.push(e.local_name().as_ref().to_vec());
                text.clear();
            }
            Xml::Text(t) => text.push_str(&t.decode().map_err(|e| e.to_string())?),
            Xml::CData(c) => text.push_str(&String::from_utf8_lossy(&c)),
            Xml::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().map_err(|e| e.to_string())?;
                        quick_xml::escape::resolve_xml_entity(&name)
                            .ok_or_else(|| format!("unknown entity &{name};"))?
                            .to_owned()
                    }
                };
                text.push_str(&resolved);
            }
            Xml::End(_) => {
                let value = std::mem::take(&mut text);
                match path.as_slice() {
                    [.., blob, name] if blob == b"Blob" && name == b"Name" => {
                        page.names.push(if encoded {
                            percent_decode_str(&value).decode_utf8_lossy().into_owned()
                        } else {
                            value
                        });
                    }
                    [root, marker] if root == b"EnumerationResults" && marker == b"NextMarker" => {
                        page.next_marker = Some(value).filter(|m| !m.is_empty());
                    }
                    _ => {}
                }
                path.pop();
            }
            Xml::Eof => break,
            _ => {}
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_urls_keep_the_sas_and_encode_names() {
        let check = |container: &str, blob: &str, expected: &str| {
            assert_eq!(blob_url(container, blob).unwrap().as_str(), expected);
        };
        check(
            "http://h:1/acct/c?sv=1&sig=a%2Bb",
            "dir/a b.txt",
            "http://h:1/acct/c/dir/a%20b.txt?sv=1&sig=a%2Bb",
        );
        check("https://h/c/", "x?#%", "https://h/c/x%3F%23%25");
        check("http://h/c", "é", "http://h/c/%C3%A9");
        assert!(blob_url("ftp://h/c", "x").is_err());
        assert!(blob_url("not a url", "x").is_err());
    }

    #[test]
    fn list_urls_append_to_the_sas() {
        let url = list_url("http://h/a/c?sv=1&sig=s", Some("in put/"), Some("m1")).unwrap();
        assert_eq!(
            url.as_str(),
            "http://h/a/c?sv=1&sig=s&restype=container&comp=list&prefix=in%20put%2F&marker=m1"
        );
        let url = list_url("http://h/a/c", None, None).unwrap();
        assert_eq!(url.as_str(), "http://h/a/c?restype=container&comp=list");
    }

    #[test]
    fn list_pages_parse() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<EnumerationResults ServiceEndpoint="http://h/" ContainerName="c"><Prefix>in</Prefix>
<Blobs><Blob><Name>in/a&amp;b.txt</Name><Properties><Content-Length>3</Content-Length></Properties></Blob>
<Blob><Name Encoded="true">in/%EF%BF%BEx</Name></Blob><Blob><Name>in/ sp </Name></Blob></Blobs>
<NextMarker>next1</NextMarker></EnumerationResults>"#;
        let page = parse_list(xml).unwrap();
        assert_eq!(page.names, ["in/a&b.txt", "in/\u{fffe}x", "in/ sp "]);
        assert_eq!(page.next_marker.as_deref(), Some("next1"));
        let empty = parse_list("<EnumerationResults><Blobs /><NextMarker /></EnumerationResults>");
        assert_eq!(empty.unwrap(), ListPage::default());
        assert!(parse_list("<EnumerationResults><Blobs>").is_ok());
        assert!(parse_list("<a></b>").is_err());
    }
}
