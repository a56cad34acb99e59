import AuthtapModel
import Foundation

/// multipart/form-data (RFC 7578): the boundary, from the Content-Type or from the body's first line.
enum Multipart {
    static func boundary(contentType: String, body: String) -> String? {
        if contentType.utf8ContainsASCIICaseInsensitive("multipart/") {
            for parameter in contentType.split(separator: ";").dropFirst() {
                let pair = parameter.split(separator: "=", maxSplits: 1).map { $0.trimmingSpaces() }
                guard pair.count == 2, pair[0].lowercased() == "boundary" else { continue }
                var value = Substring(pair[1])
                if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 {
                    value = value.dropFirst().dropLast()
                }
                if !value.isEmpty, value.utf8.count <= 200 { return String(value) }
            }
        }
        // A multipart body under another label: `--BOUNDARY` CRLF, then a part's headers.
        guard body.hasPrefix("--"), let lineEnd = body.firstIndex(where: { $0 == "\r\n" || $0 == "\n" }) else {
            return nil
        }
        let line = body[body.index(body.startIndex, offsetBy: 2)..<lineEnd]
        guard !line.isEmpty, line.utf8.count <= 200, !line.contains(" "),
            body[lineEnd...].prefix(200).lowercased().contains("content-disposition")
        else { return nil }
        return String(line)
    }
}

extension StringProtocol {
    func trimmingSpaces() -> String {
        String(drop(while: { $0 == " " || $0 == "\t" }).reversed().drop(while: { $0 == " " || $0 == "\t" }).reversed())
    }
}

extension Masker {
    // MARK: multipart/form-data

    /// Masks each part by its field name: a secret field's content goes whole, a readable field's is masked
    /// as the body it is (JSON, form, text). A file part is kept only when it is text.
    func maskMultipart(_ text: String, boundary: String, location: ParamLocation, params: inout [OAuthParam]) -> String
    {
        let delimiter = "--" + boundary
        let pieces = text.components(separatedBy: delimiter)
        guard pieces.count >= 2 else { return maskFreeText(text) }
        var out = pieces[0].isEmpty ? "" : maskFreeText(pieces[0])
        for piece in pieces.dropFirst() {
            out += delimiter
            if piece.hasPrefix("--") {
                out += piece
                continue
            }
            guard let split = piece.range(of: "\r\n\r\n") ?? piece.range(of: "\n\n") else {
                out += maskFreeText(piece)
                continue
            }
            let head = String(piece[..<split.lowerBound])
            var content = String(piece[split.upperBound...])
            var trailer = ""
            if content.hasSuffix("\r\n") {
                content.removeLast(); trailer = "\r\n"
            }  // "\r\n" is one Character
            else if content.hasSuffix("\n") {
                content.removeLast(); trailer = "\n"
            }
            let disposition = Self.headerValue("content-disposition", in: head) ?? ""
            let name = Self.dispositionParameter("name", in: disposition)
            let isFile = Self.dispositionParameter("filename", in: disposition) != nil
            let partType = Self.headerValue("content-type", in: head) ?? ""
            let maskedHead = maskFreeText(head)
            var maskedContent: String
            if let name, Masker.isSecret(name) {
                let (masked, param) = secret(kind: name, value: content)
                params.append(OAuthParam(location: location, name: name, secret: param))
                maskedContent = masked
            } else if isFile, !Self.isTextual(content) {
                maskedContent = "[authtap: file part not kept, \(content.utf8.count) bytes]"
            } else {
                let type = partType.isEmpty ? "text/plain" : partType
                if let name, !isFile { params.append(OAuthParam(location: location, name: name, value: content)) }
                var ignored: [OAuthParam] = []
                maskedContent = maskBodyText(content, contentType: type, location: location, params: &ignored)
                if maskedContent == content { maskedContent = maskReadable(content, name: name) }
            }
            out += maskedHead + String(piece[split]) + maskedContent + trailer
        }
        return out
    }

    static func headerValue(_ name: String, in head: String) -> String? {
        for line in head.split(whereSeparator: { $0 == "\r\n" || $0 == "\n" }) {
            guard let colon = line.firstIndex(of: ":") else { continue }
            if line[..<colon].trimmingSpaces().lowercased() == name {
                return line[line.index(after: colon)...].trimmingSpaces()
            }
        }
        return nil
    }

    static func dispositionParameter(_ name: String, in disposition: String) -> String? {
        for parameter in disposition.split(separator: ";").dropFirst() {
            let pair = parameter.split(separator: "=", maxSplits: 1)
            guard pair.count == 2, pair[0].trimmingSpaces().lowercased() == name else { continue }
            var value = Substring(pair[1].trimmingSpaces())
            if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 { value = value.dropFirst().dropLast() }
            return String(value)
        }
        return nil
    }

    /// Text, not a binary file that happened to decode: no NUL and few control characters.
    static func isTextual(_ content: String) -> Bool {
        var controls = 0
        for c in content.utf8 {
            if c == 0 { return false }
            if c == 0xEF, content.utf8Contains("\u{FFFD}") { return false }  // bytes that were not text
            if c < 0x20 && c != 0x09 && c != 0x0A && c != 0x0D { controls += 1 }
        }
        return controls * 20 <= content.utf8.count
    }

    // MARK: XML, SOAP and HTML

    /// Masks markup: an element whose name is secret (`<o:Password>`, `<wsse:BinarySecurityToken>`,
    /// `<saml:Assertion>`) loses its whole content; a secret attribute its value; a tag naming a secret
    /// (`<input name="password" value="…">`, `<meta name="csrf-token" content="…">`) its value or content.
    /// Other attribute values and text are looked at again for URLs, JWTs, tokens and random runs.
    func maskMarkup(_ text: String) -> String {
        let b = Array(text.utf8)
        // In HTML, <code> is the element for source code, not an authorization code.
        let isHTML =
            text.utf8ContainsASCIICaseInsensitive("<html")
            || text.utf8ContainsASCIICaseInsensitive("<!doctype html")
        var out: [UInt8] = []
        out.reserveCapacity(b.count + 64)
        var i = 0
        var textStart = 0
        var element: String? = nil
        func flushText(upTo end: Int) {
            guard textStart < end else { return }
            let chunk = String(decoding: b[textStart..<end], as: UTF8.self)
            let masked = maskShapes(maskNamedValues(chunk), sweep: !SweepExemptions.exempt(element))
            out += Array(masked.utf8)
        }
        while i < b.count {
            guard b[i] == UInt8(ascii: "<") else {
                i += 1
                continue
            }
            flushText(upTo: i)
            // Comments, CDATA, doctype and processing instructions: their text is scanned like text.
            if b[i...].starts(with: Array("<!--".utf8)) || b[i...].starts(with: Array("<![CDATA[".utf8))
                || (i + 1 < b.count && (b[i + 1] == UInt8(ascii: "!") || b[i + 1] == UInt8(ascii: "?")))
            {
                let end = b[i...].firstIndex(of: UInt8(ascii: ">")).map { $0 + 1 } ?? b.count
                out += Array(maskShapes(String(decoding: b[i..<end], as: UTF8.self), sweep: true).utf8)
                i = end
                textStart = i
                continue
            }
            let tag = Self.parseTag(b, at: i)
            out += Array(maskTag(b, tag).utf8)
            i = tag.end
            textStart = i
            if !tag.closing, !tag.selfClosing, let name = tag.name {
                element = name
                if Masker.isSecret(name), !(isHTML && name.lowercased() == "code") {
                    // The whole content up to the matching end tag is the secret.
                    let close = Array("</\(name)".utf8)
                    var k = i
                    var end = b.count
                    while k + close.count <= b.count {
                        if b[k] == UInt8(ascii: "<"), b[k..<(k + close.count)].elementsEqual(close) { end = k; break }
                        k += 1
                    }
                    if end > i {
                        let content = String(decoding: b[i..<end], as: UTF8.self)
                        out += Array(mask(kind: name, value: content).utf8)
                    }
                    i = end
                    textStart = i
                }
            }
        }
        flushText(upTo: b.count)
        return String(decoding: out, as: UTF8.self)
    }

    struct Tag {
        var start: Int
        var end: Int
        var name: String?
        var closing: Bool
        var selfClosing: Bool
        /// Attribute name and the byte range of its value (without quotes).
        var attributes: [(name: String, value: Range<Int>)]
    }

    /// A start or end tag from `<` to its `>` (quoted `>` skipped); cut input ends the tag at the end.
    static func parseTag(_ b: [UInt8], at start: Int) -> Tag {
        var i = start + 1
        var closing = false
        if i < b.count, b[i] == UInt8(ascii: "/") { closing = true; i += 1 }
        let nameStart = i
        while i < b.count,
            isNameByte(b[i]) || b[i] == UInt8(ascii: ":") || b[i] == UInt8(ascii: "-")
                || b[i] == UInt8(ascii: ".")
        { i += 1 }
        let name = i > nameStart ? String(decoding: b[nameStart..<i], as: UTF8.self) : nil
        var attributes: [(name: String, value: Range<Int>)] = []
        while i < b.count, b[i] != UInt8(ascii: ">") {
            if isNameStart(b[i]) {
                let attrStart = i
                while i < b.count,
                    isNameByte(b[i]) || b[i] == UInt8(ascii: ":") || b[i] == UInt8(ascii: "-")
                        || b[i] == UInt8(ascii: ".")
                { i += 1 }
                let attrName = String(decoding: b[attrStart..<i], as: UTF8.self)
                var k = i
                while k < b.count, b[k] == 0x20 || b[k] == 0x09 || b[k] == 0x0A || b[k] == 0x0D { k += 1 }
                guard k < b.count, b[k] == UInt8(ascii: "=") else { continue }
                k += 1
                while k < b.count, b[k] == 0x20 || b[k] == 0x09 || b[k] == 0x0A || b[k] == 0x0D { k += 1 }
                if k < b.count, b[k] == UInt8(ascii: "\"") || b[k] == UInt8(ascii: "'") {
                    let q = b[k]
                    let valueStart = k + 1
                    var e = valueStart
                    while e < b.count, b[e] != q { e += 1 }
                    attributes.append((attrName, valueStart..<e))
                    i = min(e + 1, b.count)
                } else {
                    let valueStart = k
                    var e = k
                    while e < b.count, b[e] != 0x20, b[e] != UInt8(ascii: ">"), b[e] != 0x09, b[e] != 0x0A { e += 1 }
                    attributes.append((attrName, valueStart..<e))
                    i = e
                }
            } else {
                i += 1
            }
        }
        let selfClosing = i > start && i - 1 < b.count && b[i - 1] == UInt8(ascii: "/")
        return Tag(
            start: start, end: min(i + 1, b.count), name: name, closing: closing, selfClosing: selfClosing,
            attributes: attributes)
    }

    /// The tag's text with secret attribute values masked and the others looked at again.
    func maskTag(_ b: [UInt8], _ tag: Tag) -> String {
        // `<input name="password" value="…">`: the value belongs to the name the tag declares.
        let declaring: Set<String> = ["name", "id", "property", "key", "itemprop"]
        let declared = tag.attributes.first { declaring.contains($0.name.lowercased()) }
            .map { String(decoding: b[$0.value], as: UTF8.self) }
        let declaresSecret = declared.map { Masker.isSecret($0) } ?? false
        var out: [UInt8] = []
        var cursor = tag.start
        for attribute in tag.attributes {
            let value = String(decoding: b[attribute.value], as: UTF8.self)
            let lower = attribute.name.lowercased()
            let masked: String
            if Masker.isSecret(attribute.name) || (declaresSecret && (lower == "value" || lower == "content")) {
                let kind = declaresSecret ? (declared ?? lower) : attribute.name
                masked = value.isEmpty ? value : mask(kind: kind, value: value)
            } else {
                masked = maskReadable(value, name: lower == "value" || lower == "content" ? declared : attribute.name)
            }
            guard masked != value else { continue }
            out += b[cursor..<attribute.value.lowerBound]
            out += Array(masked.utf8)
            cursor = attribute.value.upperBound
        }
        out += b[cursor..<tag.end]
        return String(decoding: out, as: UTF8.self)
    }
}
