import Foundation

/// The text a browser would show of an HTML page: scripts, styles and tags removed, the common entities
/// decoded, whitespace collapsed. Enough to read an error page's message; not an HTML parser.
enum HTMLText {
    static func visible(_ page: String, limit: Int = 65536) -> String {
        var out = ""
        var rest = Substring(page.prefix(limit))
        var skipUntil: String? = nil
        while !rest.isEmpty {
            if let close = skipUntil {
                guard let end = rest.range(of: close, options: .caseInsensitive) else { break }
                rest = rest[end.upperBound...]
                skipUntil = nil
                continue
            }
            guard let lt = rest.firstIndex(of: "<") else {
                out += rest
                break
            }
            out += rest[..<lt]
            let tag = rest[lt...].prefix(8).lowercased()
            if tag.hasPrefix("<script") { skipUntil = "</script>" }
            if tag.hasPrefix("<style") { skipUntil = "</style>" }
            if tag.hasPrefix("<!--") {
                skipUntil = "-->"
                rest = rest[rest.index(after: lt)...]
                continue
            }
            guard let gt = rest[lt...].firstIndex(of: ">") else { break }
            out += " "
            rest = rest[rest.index(after: gt)...]
        }
        for (entity, char) in entities { out = out.replacingOccurrences(of: entity, with: char) }
        return out.split(whereSeparator: \.isWhitespace).joined(separator: " ")
    }

    static let entities = [
        ("&lt;", "<"), ("&gt;", ">"), ("&quot;", "\""), ("&#39;", "'"), ("&#x27;", "'"), ("&apos;", "'"),
        ("&nbsp;", " "), ("&#34;", "\""), ("&amp;", "&"),
    ]
}
