//! A tiny XML writer for AWS Query-protocol responses: elements, escaped text, nothing else.
//!
//! Contract: every text node and attribute written through [`Xml`] is escaped, so values taken
//! from requests (tags, client tokens) can never break the document.

use std::fmt::Write;

/// The EC2 2016-11-15 XML namespace.
pub const EC2_NS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";
/// The STS 2011-06-15 XML namespace.
pub const STS_NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// Escapes text for an XML text node or attribute value.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// An XML document under construction.
#[derive(Debug, Default)]
pub struct Xml {
    out: String,
}

impl Xml {
    /// A document whose root element `root` carries namespace `ns`; close it with [`Xml::finish`].
    pub fn document(root: &str, ns: &str) -> Self {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = write!(out, "<{root} xmlns=\"{}\">", escape(ns));
        Self { out }
    }

    /// A bare document (error bodies have no namespace).
    pub fn bare(root: &str) -> Self {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = write!(out, "<{root}>");
        Self { out }
    }

    /// Opens `<name>`.
    pub fn open(&mut self, name: &str) -> &mut Self {
        let _ = write!(self.out, "<{name}>");
        self
    }

    /// Closes `</name>`.
    pub fn close(&mut self, name: &str) -> &mut Self {
        let _ = write!(self.out, "</{name}>");
        self
    }

    /// Writes `<name>text</name>` with `text` escaped.
    pub fn leaf(&mut self, name: &str, text: impl std::fmt::Display) -> &mut Self {
        let _ = write!(self.out, "<{name}>{}</{name}>", escape(&text.to_string()));
        self
    }

    /// Writes the leaf only when `text` is `Some`.
    pub fn opt(&mut self, name: &str, text: Option<impl std::fmt::Display>) -> &mut Self {
        if let Some(t) = text {
            self.leaf(name, t);
        }
        self
    }

    /// Closes the root and returns the document.
    pub fn finish(mut self, root: &str) -> String {
        let _ = write!(self.out, "</{root}>");
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_that_matters() {
        let mut x = Xml::document("R", EC2_NS);
        x.leaf("v", "<a&b>\"'");
        let doc = x.finish("R");
        assert!(doc.contains("<v>&lt;a&amp;b&gt;&quot;&apos;</v>"), "{doc}");
    }
}
