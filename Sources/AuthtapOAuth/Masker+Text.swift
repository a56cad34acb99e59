import AuthtapModel

extension Masker {
    /// Masks what a value under a readable name may still hide, wherever it stands (JSON string, form or
    /// query value, header, XML text): URLs and query or fragment strings inside it (parsed and masked
    /// recursively), JWTs, published token formats, and, unless `name` is exempt, random-looking runs.
    /// Returns the value itself when nothing in it is secret (the common case, without a copy).
    public func maskReadable(_ value: String, name: String?, depth: Int = 0) -> String {
        let count = value.utf8.count
        guard count >= 6 else { return value }
        var text = value
        if depth < 3, text.utf8Contains(byte: UInt8(ascii: "=")) {
            text = maskEmbeddedPairs(text, depth: depth)
        }
        // Most readable values (`Bearer`, `3600`, a scope) are shorter than any shape: no scan, no name lookup.
        guard text.utf8.count >= Self.shortestShape else { return text }
        return maskShapes(text, sweep: !SweepExemptions.exempt(name))
    }

    /// The fewest bytes in which any shape can be found: a JWT, a published token format or a swept run.
    static let shortestShape = min(Self.shortestJWT, TokenFormats.shortestMatch, EntropySweep.minimumLength)

    /// `…?a=b#c=d` or `a=b&c=d` inside a value: secret pairs masked, readable pair values looked at again.
    private func maskEmbeddedPairs(_ value: String, depth: Int) -> String {
        var ignored: [OAuthParam] = []
        let hasURLMarks = value.utf8Contains(byte: UInt8(ascii: "?")) || value.utf8Contains(byte: UInt8(ascii: "#"))
        if hasURLMarks {
            return maskURL(value, location: .unrecorded, params: &ignored, depth: depth + 1)
        }
        guard FormCoding.looksLikePairs(value) else { return value }
        return maskPairs(Substring(value), location: .unrecorded, params: &ignored, depth: depth + 1)
    }

    // MARK: Shapes: JWTs, token formats, random-looking runs

    /// Replaces JWTs (a JWS keeps header and claims; a JWE goes whole), published token formats and,
    /// with `sweep`, high-entropy runs. Text already inside a marker is never looked at again.
    func maskShapes(_ text: String, sweep: Bool) -> String {
        var bytes = Array(text.utf8)
        let spans = shapeSpans(in: bytes, sweep: sweep)
        guard !spans.isEmpty else { return text }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + spans.count * 40)
        var cursor = 0
        for span in spans {
            out.append(contentsOf: bytes[cursor..<span.range.lowerBound])
            let value = String(decoding: bytes[span.range], as: UTF8.self)
            out.append(contentsOf: Array(secret(kind: span.kind, value: value).masked.utf8))
            cursor = span.range.upperBound
        }
        out.append(contentsOf: bytes[cursor...])
        bytes = out
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Non-overlapping secret spans in `bytes`, in order. Markers already in the text are skipped.
    /// JWTs and published formats are found first; the sweep then looks only at the text between them,
    /// so a random-looking run next to a token (a path segment, a `/`) cannot swallow the token's shape.
    func shapeSpans(in bytes: [UInt8], sweep: Bool) -> [(range: Range<Int>, kind: String)] {
        let jwts = Self.jwtSpans(in: bytes)
        let masked = Self.markerRanges(in: bytes) + jwts.filter { $0.kind.isEmpty }.map(\.range)
        var candidates = jwts.filter { !$0.kind.isEmpty }
        bytes.withUnsafeBufferPointer { b in
            for hit in TokenFormats.scan(b) { candidates.append((hit.range, hit.format.id)) }
        }
        candidates.sort {
            $0.range.lowerBound != $1.range.lowerBound
                ? $0.range.lowerBound < $1.range.lowerBound : $0.range.count > $1.range.count
        }
        var kept: [(range: Range<Int>, kind: String)] = []
        for span in candidates {
            if let last = kept.last, span.range.lowerBound < last.range.upperBound { continue }
            if masked.contains(where: { $0.overlaps(span.range) }) { continue }
            kept.append(span)
        }
        guard sweep else { return kept }
        // The gaps between markers and shapes, each swept on its own.
        let taken = (masked + kept.map(\.range)).sorted { $0.lowerBound < $1.lowerBound }
        var gaps: [Range<Int>] = []
        var cursor = 0
        for range in taken {
            if range.lowerBound > cursor { gaps.append(cursor..<range.lowerBound) }
            cursor = max(cursor, range.upperBound)
        }
        if cursor < bytes.count { gaps.append(cursor..<bytes.count) }
        bytes.withUnsafeBufferPointer { b in
            for gap in gaps where gap.count >= EntropySweep.minimumLength {
                let slice = UnsafeBufferPointer(rebasing: b[gap])
                for run in EntropySweep.highEntropyRuns(slice) {
                    kept.append(((gap.lowerBound + run.lowerBound)..<(gap.lowerBound + run.upperBound), "opaque"))
                }
            }
        }
        kept.sort { $0.range.lowerBound < $1.range.lowerBound }
        return kept
    }

    /// Where whole markers `[masked KIND len=N fp=HEX]` stand in `bytes`.
    static func markerRanges(in bytes: [UInt8]) -> [Range<Int>] {
        let open = Array("[masked ".utf8)
        var ranges: [Range<Int>] = []
        var i = 0
        while i + open.count <= bytes.count {
            if bytes[i] == UInt8(ascii: "["), bytes[i..<(i + open.count)].elementsEqual(open),
                let close = bytes[i...].firstIndex(of: UInt8(ascii: "]"))
            {
                ranges.append(i..<(close + 1))
                i = close + 1
            } else {
                i += 1
            }
        }
        return ranges
    }

    static func isBase64URL(_ c: UInt8) -> Bool {
        (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39)
            || c == UInt8(ascii: "-") || c == UInt8(ascii: "_")
    }

    /// A JWT shorter than this is not taken for one (the smallest real JWS header alone is longer).
    static let shortestJWT = 20

    /// JWS (three segments) and JWE (five segments) compact tokens anywhere in the bytes: a run that
    /// starts `eyJ` (base64url of `{"`) at a boundary, then dot-separated base64url segments.
    static func jwtSpans(in b: [UInt8]) -> [(range: Range<Int>, kind: String)] {
        var spans: [(range: Range<Int>, kind: String)] = []
        var i = 0
        while i + 3 <= b.count {
            guard b[i] == UInt8(ascii: "e"), b[i + 1] == UInt8(ascii: "y"), b[i + 2] == UInt8(ascii: "J"),
                i == 0 || !isBase64URL(b[i - 1])
            else {
                i += 1
                continue
            }
            var end = i
            var segments = 1
            while end < b.count, isBase64URL(b[end]) { end += 1 }
            while end < b.count, b[end] == UInt8(ascii: "."), segments < 5 {
                var next = end + 1
                while next < b.count, isBase64URL(b[next]) { next += 1 }
                segments += 1
                end = next
            }
            // A JWS whose signature segment is empty is unsigned, or already masked (a marker follows).
            let signed = segments == 5 || (end > 0 && b[end - 1] != UInt8(ascii: "."))
            if segments == 3 || segments == 5, signed, end - i >= Self.shortestJWT {
                spans.append((i..<end, segments == 5 ? "jwe" : "jwt"))
            } else if segments == 3, !signed, end < b.count, b[end] == UInt8(ascii: "[") {
                // HEADER.CLAIMS.[masked …]: masked already; kept readable, never swept.
                spans.append((i..<end, ""))
            }
            i = max(end, i + 1)
        }
        return spans
    }

    // MARK: Free text

    /// Masks secrets in text that is neither JSON nor a form: `name=value`, `"name": "value"`, HTML
    /// inputs (`<input name="code" value="...">`, either attribute order), then the shapes anywhere.
    public func maskFreeText(_ text: String) -> String {
        maskShapes(maskNamedValues(text), sweep: true)
    }

    /// The name-based half of `maskFreeText`.
    func maskNamedValues(_ text: String) -> String {
        let b = Array(text.utf8)
        var spans: [(start: Int, end: Int, name: String)] = []
        var i = 0
        while i < b.count {
            guard Self.isNameStart(b[i]), i == 0 || !Self.isNameByte(b[i - 1]) else {
                i += 1
                continue
            }
            var j = i
            while j < b.count, Self.isNameByte(b[j]) || Self.isNameJoiner(b[j]) { j += 1 }
            // A name does not end with a joiner: `a.` before `=` is `a`.
            while j > i, Self.isNameJoiner(b[j - 1]), b[j - 1] != UInt8(ascii: "]") { j -= 1 }
            let name = String(decoding: b[i..<j], as: UTF8.self)
            if j < b.count, Self.followsName(b[j]), SecretNames.isSecret(name),
                let span = Self.valueSpan(after: j, nameStart: i, in: b)
            {
                spans.append((span.lowerBound, span.upperBound, name))
                i = max(j, span.upperBound)
            } else {
                i = max(j, i + 1)
            }
        }
        if spans.isEmpty { return text }
        var out: [UInt8] = []
        out.reserveCapacity(b.count + spans.count * 48)
        var cursor = 0
        for span in spans.sorted(by: { $0.start < $1.start }) where span.start >= cursor {
            out.append(contentsOf: b[cursor..<span.start])
            let value = String(decoding: b[span.start..<span.end], as: UTF8.self)
            out.append(contentsOf: Array(mask(kind: span.name, value: value).utf8))
            cursor = span.end
        }
        out.append(contentsOf: b[cursor...])
        return String(decoding: out, as: UTF8.self)
    }

    static func isNameByte(_ c: UInt8) -> Bool {
        (c >= 0x61 && c <= 0x7A) || (c >= 0x41 && c <= 0x5A) || (c >= 0x30 && c <= 0x39) || c == UInt8(ascii: "_")
    }
    /// Bytes that join the words of one name: `pf.pass`, `x-api-key`, `user[password]`, `%5B`.
    static func isNameJoiner(_ c: UInt8) -> Bool {
        c == UInt8(ascii: ".") || c == UInt8(ascii: "-") || c == UInt8(ascii: "[") || c == UInt8(ascii: "]")
            || c == UInt8(ascii: "%")
    }
    static func isNameStart(_ c: UInt8) -> Bool { (c | 0x20) >= 0x61 && (c | 0x20) <= 0x7A }
    static func followsName(_ c: UInt8) -> Bool {
        c == UInt8(ascii: "=") || c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") || c == UInt8(ascii: ":")
            || c == 0x20 || c == 0x09
    }

    /// Where the value of the name ending at `j` lies, for the three shapes; `nil` if none.
    static func valueSpan(after j: Int, nameStart i: Int, in b: [UInt8]) -> Range<Int>? {
        let quote = UInt8(ascii: "\""), apostrophe = UInt8(ascii: "'")
        func skipSpaces(_ k: Int) -> Int {
            var k = k
            while k < b.count, b[k] == 0x20 || b[k] == 0x09 || b[k] == 0x0A || b[k] == 0x0D { k += 1 }
            return k
        }
        func quoted(from k: Int) -> Range<Int>? {
            guard k < b.count, b[k] == quote || b[k] == apostrophe else { return nil }
            let q = b[k]
            var e = k + 1
            while e < b.count, b[e] != q {
                if b[e] == UInt8(ascii: "\\") { e += 1 }
                e += 1
            }
            return (k + 1)..<min(e, b.count)
        }
        func nonEmpty(_ r: Range<Int>?) -> Range<Int>? {
            guard let r, !r.isEmpty else { return nil }
            return Masker.alreadyMasked(String(decoding: b[r], as: UTF8.self)) != nil ? nil : r
        }
        // HTML attribute: name="code" ... value="..." (or value before name) inside one tag.
        if i >= 6, j < b.count, b[j] == quote || b[j] == apostrophe, b[i - 1] == b[j], b[i - 2] == UInt8(ascii: "=") {
            let attr = Array("name".utf8)
            if b[(i - 6)..<(i - 2)].map({ $0 | 0x20 }).elementsEqual(attr) {
                let tagStart = b[..<i].lastIndex(of: UInt8(ascii: "<")) ?? 0
                let tagEnd = b[j...].firstIndex(of: UInt8(ascii: ">")) ?? b.count
                for valueAttr in [Array("value=".utf8), Array("content=".utf8)] {
                    var k = tagStart
                    while k + valueAttr.count < tagEnd {
                        if b[k..<(k + valueAttr.count)].map({ $0 | 0x20 }).elementsEqual(valueAttr),
                            k == 0 || !isNameByte(b[k - 1])
                        {
                            return nonEmpty(quoted(from: k + valueAttr.count))
                        }
                        k += 1
                    }
                }
                return nil
            }
        }
        // JSON-like: "name" : "value"
        if i >= 1, b[i - 1] == quote || b[i - 1] == apostrophe, j < b.count, b[j] == b[i - 1] {
            var k = skipSpaces(j + 1)
            guard k < b.count, b[k] == UInt8(ascii: ":") else { return nil }
            k = skipSpaces(k + 1)
            return nonEmpty(quoted(from: k))
        }
        // name=value, name="value"
        if j < b.count, b[j] == UInt8(ascii: "=") {
            if let q = quoted(from: j + 1) { return nonEmpty(q) }
            // A marker holds spaces: a value that is one whole marker is masked already.
            if let marker = markerRanges(in: b).first(where: { $0.lowerBound == j + 1 }),
                alreadyMasked(String(decoding: b[marker], as: UTF8.self)) != nil
            {
                return nil
            }
            var e = j + 1
            while e < b.count, !Self.valueDelimiters.contains(b[e]) { e += 1 }
            return nonEmpty((j + 1)..<e)
        }
        return nil
    }

    static let valueDelimiters: Set<UInt8> = Set("&;,\"'<> \t\r\n".utf8)
}
