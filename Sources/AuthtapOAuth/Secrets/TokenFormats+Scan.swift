extension TokenFormats {
    // MARK: Scanning

    private struct Candidate {
        let format: Int
        let prefix: [UInt8]
        let isPEMBlock: Bool
    }

    /// First bytes of every prefix, those of PEM headers (which match off a boundary too), and for each first
    /// byte the candidates, longest prefix first.
    private static let index: (first: ByteClass, pemFirst: ByteClass, byFirst: [[Candidate]]) = {
        var byFirst = [[Candidate]](repeating: [], count: 256)
        var firsts = ""
        var pemFirsts = ""
        for (f, format) in all.enumerated() {
            for prefix in format.prefixes {
                let bytes = Array(prefix.utf8)
                byFirst[Int(bytes[0])].append(Candidate(format: f, prefix: bytes, isPEMBlock: format.isPEMBlock))
                firsts.unicodeScalars.append(Unicode.Scalar(bytes[0]))
                if format.isPEMBlock { pemFirsts.unicodeScalars.append(Unicode.Scalar(bytes[0])) }
            }
        }
        for b in 0..<256 { byFirst[b].sort { $0.prefix.count > $1.prefix.count } }
        return (ByteClass(firsts), ByteClass(pemFirsts), byFirst)
    }()

    private static let word = ByteClass.base64url

    /// Every match in `bytes`: the byte range of the whole token (prefix included) and the rule.
    /// A match must start at a boundary (start of input or a byte that is not [A-Za-z0-9_-]) and the body must
    /// end at a boundary too (the next byte is not in the body class), with body length in [minBody, maxBody]
    /// (when longer than maxBody it is not that format). PEM blocks match from BEGIN through END line.
    public static func scan(_ bytes: UnsafeBufferPointer<UInt8>) -> [(range: Range<Int>, format: TokenFormat)] {
        var hits: [(range: Range<Int>, format: TokenFormat)] = []
        let (first, pemFirst, byFirst) = index
        let n = bytes.count
        var i = 0
        while i < n {
            let b = bytes[i]
            // Most bytes of text start no prefix, or stand inside a word where only a PEM header may start.
            let boundary = first.contains(b) && atBoundary(bytes, i)
            guard boundary || pemFirst.contains(b) else {
                i += 1
                continue
            }
            var matched = false
            for candidate in byFirst[Int(b)] {
                // Five dashes and BEGIN anchor a PEM header whatever precedes it.
                guard boundary || candidate.isPEMBlock, hasPrefix(bytes, at: i, candidate.prefix) else { continue }
                let format = all[candidate.format]
                let end =
                    format.isPEMBlock
                    ? pemEnd(bytes, start: i, bodyStart: i + candidate.prefix.count, format: format)
                    : bodyEnd(bytes, bodyStart: i + candidate.prefix.count, format: format)
                if let end {
                    hits.append((i..<end, format))
                    i = end
                    matched = true
                    break
                }
            }
            if !matched { i += 1 }
        }
        return hits
    }

    /// Start of input, a byte outside `[A-Za-z0-9_-]`, or right after an escape that stands for one: a JSON or
    /// C escape (`\n`, `\t`, `\r`) or a percent-encoded byte (`%20`, `%3D`), since text is not always decoded first.
    private static func atBoundary(_ bytes: UnsafeBufferPointer<UInt8>, _ i: Int) -> Bool {
        if i == 0 || !word.contains(bytes[i - 1]) { return true }
        let p = bytes[i - 1]
        if i >= 2, bytes[i - 2] == UInt8(ascii: "\\"),
            p == UInt8(ascii: "n") || p == UInt8(ascii: "t")
                || p == UInt8(ascii: "r")
        {
            return true
        }
        if i >= 3, bytes[i - 3] == UInt8(ascii: "%"), ByteClass.hex.contains(bytes[i - 2]),
            ByteClass.hex.contains(p)
        {
            return true
        }
        return false
    }

    private static func hasPrefix(_ bytes: UnsafeBufferPointer<UInt8>, at i: Int, _ prefix: [UInt8]) -> Bool {
        guard i + prefix.count <= bytes.count else { return false }
        for k in 0..<prefix.count where bytes[i + k] != prefix[k] { return false }
        return true
    }

    /// The end of a token body that fits `format`, or nil.
    private static func bodyEnd(_ bytes: UnsafeBufferPointer<UInt8>, bodyStart: Int, format: TokenFormat) -> Int? {
        var j = bodyStart
        let limit = min(bytes.count, bodyStart + format.maxBody + 1)
        while j < limit, format.body.contains(bytes[j]) { j += 1 }
        let length = j - bodyStart
        guard length >= format.minBody, length <= format.maxBody else { return nil }
        if var infix = format.infix,
            !infix.withUTF8({ ByteSearch.contains(UnsafeBufferPointer(rebasing: bytes[bodyStart..<j]), $0) })
        {
            return nil
        }
        return j
    }

    /// The end of a PEM private key block: after the END line's closing dashes, or, when the END line is missing
    /// (a truncated body), after the last byte that can belong to the block.
    private static func pemEnd(
        _ bytes: UnsafeBufferPointer<UInt8>, start: Int, bodyStart: Int,
        format: TokenFormat
    ) -> Int? {
        let dashes = Array("-----".utf8)
        // The header label: `[ A-Z0-9_-]{0,100}` up to the first `-----`, ending in PRIVATE KEY (or KEY BLOCK).
        let labelClass = ByteClass.upperAlnum.union(ByteClass(" _-"))
        var j = bodyStart
        let labelLimit = min(bytes.count, bodyStart + 101 + dashes.count)
        var headerEnd: Int?
        while j < labelLimit, labelClass.contains(bytes[j]) {
            if hasPrefix(bytes, at: j, dashes) {
                headerEnd = j
                break
            }
            j += 1
        }
        guard let headerEnd else { return nil }
        let label = String(decoding: UnsafeBufferPointer(rebasing: bytes[bodyStart..<headerEnd]), as: UTF8.self)
        guard label.hasSuffix("PRIVATE KEY") || label.hasSuffix("PRIVATE KEY BLOCK") else { return nil }
        let blockStart = headerEnd + dashes.count
        let end = Array("-----END".utf8)
        let searchLimit = min(bytes.count, blockStart + format.maxBody)
        var k = blockStart
        while k < searchLimit {
            if hasPrefix(bytes, at: k, end) {
                var close = k + end.count
                while close < bytes.count, labelClass.contains(bytes[close]), !hasPrefix(bytes, at: close, dashes) {
                    close += 1
                }
                guard hasPrefix(bytes, at: close, dashes) else { break }
                return k - blockStart >= format.minBody ? close + dashes.count : nil
            }
            k += 1
        }
        var tail = blockStart
        while tail < searchLimit, format.body.contains(bytes[tail]) { tail += 1 }
        return tail - blockStart >= format.minBody ? tail : nil
    }
}
