/// The masker's last resort, after names and published formats: runs of base64 or hex that look random enough
/// to be a credential. Modelled on detect-secrets' high-entropy string plugins (Yelp/detect-secrets
/// `detect_secrets/plugins/high_entropy_strings.py`: Shannon entropy over the base64 charset above 4.5, over hex
/// above 3.0). Those limits suit long strings; a 20-character random token rarely reaches them, so here the
/// threshold follows what a random string of that length and alphabet is expected to reach, and never exceeds
/// detect-secrets' limits.
///
/// What counts as a run, and why:
/// - a narrow run is `[A-Za-z0-9_-]` (base64url, RFC 4648 §5) with trailing `=` padding;
/// - single `+` and `/` join narrow runs into a wide run (standard base64, RFC 4648 §4), because a standard base64
///   secret (an AWS secret key, a storage key) split at its `/` would leave pieces under 20 characters readable.
///   A wide run is judged whole only when it has both letter cases and passes at alphabet size 64; otherwise its
///   pieces are judged one by one, which keeps URL paths (`/oauth2/v1/authorize`) and form text
///   (`openid+profile+email`) out while still catching a random id inside a path;
/// - every other byte ends a run: `.` (JWTs, hosts, versions), `:`, `%`, `&`, `=` between names and values,
///   quotes, spaces, `~`.
public enum EntropySweep {
    public static let minimumLength = 20

    /// Byte ranges of runs in `bytes` that look random enough to be a secret. JWT-shaped runs (`eyJ…` followed by
    /// `.`) are left to the masker's JWT handling, and authtap's own `[masked …]` markers are skipped whole.
    public static func highEntropyRuns(_ bytes: UnsafeBufferPointer<UInt8>) -> [Range<Int>] {
        var out: [Range<Int>] = []
        let n = bytes.count
        var i = 0
        while i < n {
            let b = bytes[i]
            if b == UInt8(ascii: "["), has(bytes, at: i, markerOpen),
                let close = (i..<n).first(where: { bytes[$0] == UInt8(ascii: "]") })
            {
                i = close + 1
                continue
            }
            // `/` and `+` open a run where they cannot be joiners: base64 may start with either.
            var first = i
            if isJoiner(b), i == 0 || !isRun(bytes[i - 1]) {
                while first < n, isJoiner(bytes[first]) { first += 1 }
            }
            let leading = first > i
            guard first < n, isRun(bytes[first]) else {
                i = max(first, i + 1)
                continue
            }
            let start = i
            let firstEnd = narrowEnd(bytes, first)
            if has(bytes, at: first, jwtStart), firstEnd < n, bytes[firstEnd] == UInt8(ascii: ".") {
                var j = firstEnd
                while j + 1 < n, bytes[j] == UInt8(ascii: "."), isRun(bytes[j + 1]) { j = narrowEnd(bytes, j + 1) }
                i = j + 1
                continue
            }
            var joiners = leading ? 1 : 0
            var j = firstEnd
            var k = j
            while k < n, isJoiner(bytes[k]) {
                while k < n, isJoiner(bytes[k]) { k += 1 }
                joiners += 1
                // Trailing joiners belong to the run (base64 may end in `/` or `+`); the pieces end at `j`.
                guard k < n, isRun(bytes[k]) else { break }
                j = narrowEnd(bytes, k)
                k = j
            }
            let end = paddingEnd(bytes, k)
            if end - start >= minimumLength {
                if joiners == 0 {
                    judgeNarrow(bytes, start..<end, into: &out)
                } else if judgeWide(bytes, start..<end, pieces: first..<j) {
                    out.append(start..<end)
                } else {
                    var p = first
                    while p < j {
                        let pieceEnd = narrowEnd(bytes, p)
                        judgeNarrow(bytes, p..<(pieceEnd == j && k == j ? end : pieceEnd), into: &out)
                        p = pieceEnd
                        while p < j, isJoiner(bytes[p]) { p += 1 }
                    }
                }
            }
            i = max(end, i + 1)
        }
        return out
    }

    /// The same verdict for one whole value (a JSON string value, a header value): true when the value, or a run
    /// inside it, is random-looking. A JWT is not: the masker recognises it by shape.
    public static func isRandomLooking(_ value: some StringProtocol) -> Bool {
        var text = String(value)
        return text.withUTF8 { !highEntropyRuns($0).isEmpty }
    }

    /// Shannon entropy in bits per byte.
    public static func entropy(_ bytes: some Collection<UInt8>) -> Double {
        withCounts { counts in
            for b in bytes { counts[Int(b)] += 1 }
            return entropy(counts, total: bytes.count)
        }
    }

    // MARK: Verdicts

    private static let markerOpen = Array("[masked ".utf8)
    private static let jwtStart = Array("eyJ".utf8)
    private static let narrow = ByteClass.base64url
    private static let lowerHex = ByteClass("0123456789abcdef")
    private static let upperHex = ByteClass("0123456789ABCDEF")

    private static func isRun(_ b: UInt8) -> Bool { narrow.contains(b) }
    private static func isJoiner(_ b: UInt8) -> Bool { b == UInt8(ascii: "+") || b == UInt8(ascii: "/") }

    static let strictSpread = 0.5

    /// detect-secrets' limits, reached by long strings.
    static let base64Cap = 4.5, hexCap = 3.0

    /// The threshold for a run of `length` characters drawn from `alphabet` symbols: log2 of the expected number of
    /// distinct symbols in a uniform random string (which tracks the median entropy of such strings within 0.2
    /// bits), less a margin that shrinks as the sample grows. `spread` 2.7 lets through all but about 1 in 1,000
    /// random strings; 1.0 sits near the 10th percentile, above almost every identifier.
    static func threshold(length: Int, alphabet: Int, spread: Double, cap: Double) -> Double {
        let k = Double(alphabet)
        let missing = power(1 - 1 / k, min(length, 4096))
        let expected = log2(k * (1 - missing)) - 0.2
        return min(cap, expected - spread / Double(length).squareRoot())
    }

    /// A wide run (containing `+` or `/`) is one token only if it does not start or end with a path word, mixes
    /// both cases, and reaches base64's threshold. A path word is three or more lowercase letters, perhaps followed
    /// by digits, with a vowel (`users`, `oauth2`, a host's `com`), next to a `/`: paths start or end with one,
    /// random base64 about one time in 500.
    private static func judgeWide(
        _ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>,
        pieces: Range<Int>
    ) -> Bool {
        let slash = UInt8(ascii: "/")
        let firstEnd = narrowEnd(bytes, pieces.lowerBound)
        if firstEnd < pieces.upperBound, bytes[firstEnd] == slash,
            isPathWord(bytes, pieces.lowerBound..<firstEnd)
        {
            return false
        }
        var lastStart = pieces.upperBound
        while lastStart > pieces.lowerBound, isRun(bytes[lastStart - 1]) { lastStart -= 1 }
        if lastStart > pieces.lowerBound, bytes[lastStart - 1] == slash,
            isPathWord(bytes, lastStart..<pieces.upperBound)
        {
            return false
        }
        let core = trimPadding(bytes, range)
        let stats = Stats(bytes, core)
        guard stats.upper > 0, stats.lower > 0 else { return false }
        return randomEnough(bytes, core, stats: stats, alphabet: 64)
    }

    private static let vowels = ByteClass("aeiouy")

    private static func isPathWord(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Bool {
        var i = range.lowerBound
        var voiced = false
        while i < range.upperBound, bytes[i] >= 0x61, bytes[i] <= 0x7A {
            voiced = voiced || vowels.contains(bytes[i])
            i += 1
        }
        guard i - range.lowerBound >= 3, voiced else { return false }
        while i < range.upperBound, bytes[i] >= 0x30, bytes[i] <= 0x39 { i += 1 }
        return i == range.upperBound
    }

    /// Judges a narrow run, splitting it when its `-`/`_` make it a slug or a dashed hex id.
    private static func judgeNarrow(
        _ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>,
        into out: inout [Range<Int>]
    ) {
        let core = trimPadding(bytes, range)
        guard core.count >= minimumLength else { return }
        let stats = Stats(bytes, core)
        let length = core.count
        if stats.isHex {
            // UUIDs and other dashed hex ids: only a group of 20 or more on its own can be a secret.
            if stats.separators > 0 {
                splitAtSeparators(bytes, core, into: &out)
            } else if stats.digits > 0, stats.lower + stats.upper > 0,
                entropy(bytes, core) >= threshold(length: length, alphabet: 16, spread: 2.7, cap: hexCap)
            {
                out.append(range)
            }
            return
        }
        // A separator every six characters or closer is a slug (`draft-ietf-oauth-v2-1-10`); random base64url has
        // one in 32.
        if stats.separators * 6 >= length {
            splitAtSeparators(bytes, core, into: &out)
            return
        }
        let classes = (stats.upper > 0 ? 1 : 0) + (stats.lower > 0 ? 1 : 0) + (stats.digits > 0 ? 1 : 0)
        guard classes >= 2 else { return }
        let alphabet =
            (stats.upper > 0 ? 26 : 0) + (stats.lower > 0 ? 26 : 0) + (stats.digits > 0 ? 10 : 0)
            + (stats.separators > 0 ? 2 : 0)
        if randomEnough(bytes, core, stats: stats, alphabet: alphabet) { out.append(range) }
    }

    private static func splitAtSeparators(
        _ bytes: UnsafeBufferPointer<UInt8>, _ core: Range<Int>,
        into out: inout [Range<Int>]
    ) {
        var p = core.lowerBound
        while p < core.upperBound {
            var q = p
            while q < core.upperBound, bytes[q] != UInt8(ascii: "-"), bytes[q] != UInt8(ascii: "_") { q += 1 }
            if q - p >= minimumLength { judgeNarrow(bytes, p..<q, into: &out) }
            p = q + 1
        }
    }

    /// Entropy at or above the strict threshold is random whatever the shape. Between the lenient and the strict
    /// threshold the run must also not read as words: identifiers (`getElementsByClassName`,
    /// `AuthorizationEndpointHandler`, `googlelogo_272x92dp`) are made of humps four or more characters long on
    /// average with at most two groups of digits; random mixed-case text has humps under two characters, and random
    /// lowercase-and-digit text, whose letter humps can be long, has a digit group every four or five characters.
    private static func randomEnough(
        _ bytes: UnsafeBufferPointer<UInt8>, _ core: Range<Int>, stats: Stats,
        alphabet: Int
    ) -> Bool {
        let length = core.count
        let h = entropy(bytes, core)
        if h >= threshold(length: length, alphabet: alphabet, spread: strictSpread, cap: base64Cap) { return true }
        let shape = humps(bytes, core)
        if shape.humps * 4 <= length, shape.digitGroups <= 2 { return false }
        return h >= threshold(length: length, alphabet: alphabet, spread: 2.7, cap: base64Cap)
    }

    /// Humps: maximal `[A-Z]?[a-z]+`, `[A-Z]+` (an acronym, less the capital that starts the next word) or
    /// `[0-9]+`; any other byte only separates them.
    static func humps(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> (humps: Int, digitGroups: Int) {
        func isUpper(_ b: UInt8) -> Bool { b >= 0x41 && b <= 0x5A }
        func isLower(_ b: UInt8) -> Bool { b >= 0x61 && b <= 0x7A }
        func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }
        var count = 0, digitGroups = 0
        var i = range.lowerBound
        let end = range.upperBound
        while i < end {
            let b = bytes[i]
            if isDigit(b) {
                count += 1
                digitGroups += 1
                while i < end, isDigit(bytes[i]) { i += 1 }
            } else if isLower(b) {
                count += 1
                while i < end, isLower(bytes[i]) { i += 1 }
            } else if isUpper(b) {
                count += 1
                var j = i
                while j < end, isUpper(bytes[j]) { j += 1 }
                if j - i == 1 {
                    while j < end, isLower(bytes[j]) { j += 1 }
                } else if j < end, isLower(bytes[j]) {
                    j -= 1
                }
                i = j
            } else {
                i += 1
            }
        }
        return (count, digitGroups)
    }

    // MARK: Runs

    private static func narrowEnd(_ bytes: UnsafeBufferPointer<UInt8>, _ from: Int) -> Int {
        var j = from
        while j < bytes.count, isRun(bytes[j]) { j += 1 }
        return j
    }

    /// Up to two `=` after a run are padding when nothing of a run follows them; otherwise `=` separates a name
    /// from its value.
    private static func paddingEnd(_ bytes: UnsafeBufferPointer<UInt8>, _ from: Int) -> Int {
        var j = from
        while j < bytes.count, j - from < 2, bytes[j] == UInt8(ascii: "=") { j += 1 }
        if j < bytes.count, isRun(bytes[j]) || isJoiner(bytes[j]) || bytes[j] == UInt8(ascii: "=") { return from }
        return j
    }

    private static func trimPadding(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Range<Int> {
        var end = range.upperBound
        while end > range.lowerBound, bytes[end - 1] == UInt8(ascii: "=") { end -= 1 }
        return range.lowerBound..<end
    }

    private static func has(_ bytes: UnsafeBufferPointer<UInt8>, at i: Int, _ literal: [UInt8]) -> Bool {
        guard i + literal.count <= bytes.count else { return false }
        for k in 0..<literal.count where bytes[i + k] != literal[k] { return false }
        return true
    }

    private struct Stats {
        var upper = 0, lower = 0, digits = 0, separators = 0
        /// Only `[0-9a-f-]` or only `[0-9A-F-]`.
        var isHex: Bool

        init(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) {
            var lowerHexOnly = true, upperHexOnly = true
            for i in range {
                let b = bytes[i]
                switch b {
                case 0x41...0x5A: upper += 1
                case 0x61...0x7A: lower += 1
                case 0x30...0x39: digits += 1
                case UInt8(ascii: "-"), UInt8(ascii: "_"): separators += 1
                default: break
                }
                if b != UInt8(ascii: "-") {
                    if !EntropySweep.lowerHex.contains(b) { lowerHexOnly = false }
                    if !EntropySweep.upperHex.contains(b) { upperHexOnly = false }
                }
            }
            isHex = lowerHexOnly || upperHexOnly
        }
    }

    // MARK: Arithmetic (the standard library has no logarithm, and this module stays free of Foundation here)

    private static func entropy(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Double {
        withCounts { counts in
            for i in range { counts[Int(bytes[i])] += 1 }
            return entropy(counts, total: range.count)
        }
    }

    private static func withCounts(_ body: (inout UnsafeMutableBufferPointer<Int32>) -> Double) -> Double {
        withUnsafeTemporaryAllocation(of: Int32.self, capacity: 256) { buffer in
            var counts = buffer
            counts.initialize(repeating: 0)
            return body(&counts)
        }
    }

    /// H = log2(n) − Σ c·log2(c) / n over the byte counts c.
    private static func entropy(_ counts: UnsafeMutableBufferPointer<Int32>, total: Int) -> Double {
        guard total > 0 else { return 0 }
        var sum = 0.0
        for c in counts where c > 1 { sum += Double(c) * log2(Double(c)) }
        return log2(Double(total)) - sum / Double(total)
    }

    private static func power(_ x: Double, _ n: Int) -> Double {
        var result = 1.0, base = x, e = n
        while e > 0 {
            if e & 1 == 1 { result *= base }
            base *= base
            e >>= 1
        }
        return result
    }

    /// log2 for positive finite x: the binary exponent plus ln(significand) by the atanh series, which converges
    /// fast on [1, 2) (z ≤ 1/3; twelve terms leave an error near 1e-13).
    static func log2(_ x: Double) -> Double {
        let m = x.significand
        let z = (m - 1) / (m + 1)
        let z2 = z * z
        var term = z, sum = 0.0, k = 1.0
        for _ in 0..<12 {
            sum += term / k
            term *= z2
            k += 2
        }
        return Double(x.exponent) + 2 * sum / 0.693_147_180_559_945_3
    }
}
