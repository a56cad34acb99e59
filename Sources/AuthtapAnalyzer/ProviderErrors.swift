import AuthtapModel
import Foundation

/// What an authorization server's error response means, once its provider's dialect is read.
public enum ErrorClass: String, Codable, Sendable {
    case codeReused = "code-reused"
    case codeExpired = "code-expired"
    /// Invalid, expired or already used: the server does not say which.
    case codeInvalid = "code-invalid"
    case redirectURIMismatch = "redirect-uri-mismatch"
    case pkceMismatch = "pkce-mismatch"
    case invalidClient = "invalid-client"
    case refreshExpired = "refresh-expired"
    case refreshRevoked = "refresh-revoked"
    case refreshInvalid = "refresh-invalid"
    case invalidScope = "invalid-scope"
    case unsupportedGrantType = "unsupported-grant-type"
    case invalidRequest = "invalid-request"
    case invalidGrant = "invalid-grant"
    case accessDenied = "access-denied"
    case interactionRequired = "interaction-required"
    case serverError = "server-error"
    /// A JWT or assertion outside its time window.
    case clockSkew = "clock-skew"
    /// A JWT or assertion that does not verify (signature, audience, issuer).
    case jwtInvalid = "jwt-invalid"
    /// An unknown tenant or realm, or a retired endpoint.
    case wrongEndpoint = "wrong-endpoint"
    case rateLimited = "rate-limited"
    /// The client application's own callback error: its stored state did not answer the callback.
    case stateMismatch = "state-mismatch"
    /// Device flow polling: the user has not finished yet (RFC 8628 §3.5). Not a failure.
    case devicePending = "device-pending"
    case deviceExpired = "device-expired"
    case other
}

/// An error as a server reported it, in whatever dialect, normalised.
public struct ErrorReport: Sendable, Equatable {
    /// The `error` code (RFC 6749 §5.2), or the provider's equivalent.
    public var code: String
    public var description: String?
    /// Numeric codes: Entra `AADSTS…`/`error_codes`, Facebook `code`/`error_subcode`.
    public var numericCodes: [Int]
    /// Where it came from: `json`, `json-nested` (Facebook), `slack`, `form`, `location`.
    public var dialect: String

    /// Every field that carries the provider's own words (description, message, reason, hint, nested and
    /// listed errors), normalised to lower-case words, with RFC 6749's catch-all sentences taken out.
    public var words: String
    /// The response carried one of RFC 6749's catch-all sentences, which list every cause and name none.
    public var catchAll: Bool

    public init(
        code: String, description: String? = nil, numericCodes: [Int] = [], dialect: String, text: [String] = []
    ) {
        self.code = code
        self.description = description
        self.numericCodes = numericCodes
        self.dialect = dialect
        // Every cause a provider names fits in its first few kilobytes; a longer text is cut, so that reading it
        // stays linear whatever a server sends.
        var all = ([description].compactMap { $0 } + text.filter { $0 != description })
            .map { ProviderErrors.words($0.prefix(4096)) }.joined(separator: " ")
        // A code written as free text (`"error": "Invalid code"`) is words too.
        if code.utf8.contains(0x20) { all = ProviderErrors.words(code.prefix(4096)) + " " + all }
        (self.words, self.catchAll) = ProviderErrors.removingCatchAll(all)
    }

    /// The short form used in evidence: `invalid_grant: AADSTS54005: …`.
    public var summary: String {
        guard let description, !description.isEmpty else { return code }
        let firstLine = description.split(whereSeparator: \.isNewline).first.map(String.init) ?? description
        return "\(code): \(firstLine.prefix(200))"
    }
}

/// One known provider message, with where it is documented or reported.
public struct ProviderErrorEntry: Sendable {
    public enum Match: Sendable {
        /// The `error` code, compared without case or punctuation.
        case code(String)
        /// Words in the provider's text (`a + b`: both), normalised as `ProviderErrors.words` does.
        case phrase(String)
        /// A numeric code (AADSTS number, Facebook subcode).
        case number(Int)
    }
    public var provider: String
    public var match: Match
    public var errorClass: ErrorClass
    public var source: String

    init(_ provider: String, _ match: Match, _ errorClass: ErrorClass, _ source: String) {
        self.provider = provider
        self.match = match
        self.errorClass = errorClass
        self.source = source
    }
}

/// Provider dialects: reading an error out of any response shape, and classifying it with the table in
/// `ProviderPhrases.swift`.
public enum ProviderErrors {
    /// The grant (or leg) an error answered: the same words mean different causes on different legs.
    public enum Leg: Sendable {
        case code, refresh, device, assertion, otherGrant, front, other
    }

    /// The class of an error, and the table entry (with its source) that decided it.
    public static func classify(_ report: ErrorReport, leg: Leg = .code) -> (ErrorClass, ProviderErrorEntry?) {
        let (raw, entry) = rawClass(report)
        return (adjust(raw, for: leg), entry)
    }

    static func rawClass(_ report: ErrorReport) -> (ErrorClass, ProviderErrorEntry?) {
        let code = squeeze(report.code.prefix(256))
        for entry in numbers {
            if case .number(let n) = entry.match, report.numericCodes.contains(n) { return (entry.errorClass, entry) }
        }
        if let entry = codeIndex[code] { return (entry.errorClass, entry) }
        let text = " " + report.words + " "
        for (entry, parts) in phraseParts where parts.allSatisfy({ text.has($0) }) { return (entry.errorClass, entry) }
        let rfc = rfcCodes[code]
        if let rfc, rfc != .invalidGrant, rfc != .invalidRequest { return (rfc, nil) }
        for (entry, parts) in fallbackParts where parts.allSatisfy({ text.has($0) }) {
            // "The request is invalid", "…not found" under invalid_request say nothing of a code.
            if rfc == .invalidRequest, entry.errorClass == .codeInvalid, case .phrase(let p) = entry.match,
                ["is invalid", "not found"].contains(p)
            {
                continue
            }
            return (entry.errorClass, entry)
        }
        if let rfc { return (rfc, nil) }
        // A code in words ("invalid code", "Authorization code expired") read as a phrase.
        let codeWords = " " + words(report.code.prefix(4096)) + " "
        for (entry, parts) in phraseParts + fallbackParts where parts.allSatisfy({ codeWords.has($0) }) {
            return (entry.errorClass, entry)
        }
        return (.other, nil)
    }

    /// The code rows by their squeezed code (the first row of a code wins).
    static let codeIndex: [String: ProviderErrorEntry] = {
        var index: [String: ProviderErrorEntry] = [:]
        for entry in codes {
            if case .code(let c) = entry.match, index[squeeze(c)] == nil { index[squeeze(c)] = entry }
        }
        return index
    }()

    /// Each phrase row with its parts normalised once, padded for whole-word matching.
    static let phraseParts = parts(phrases)
    static let fallbackParts = parts(fallbackPhrases)

    static func parts(_ rows: [ProviderErrorEntry]) -> [(ProviderErrorEntry, [String])] {
        rows.compactMap { entry in
            guard case .phrase(let p) = entry.match else { return nil }
            return (entry, p.split(separator: "+").map { " " + words($0) + " " })
        }
    }

    /// The same words on another leg: an expired refresh token is not an expired code, and "expired" in a JWT
    /// bearer grant is the assertion's time window.
    static func adjust(_ cls: ErrorClass, for leg: Leg) -> ErrorClass {
        switch (leg, cls) {
        case (.refresh, .codeReused), (.refresh, .accessDenied): return .refreshRevoked
        case (.refresh, .codeExpired): return .refreshExpired
        case (.refresh, .codeInvalid): return .refreshInvalid
        case (.code, .refreshRevoked), (.code, .refreshInvalid), (.code, .refreshExpired): return .codeInvalid
        case (.device, .codeExpired): return .deviceExpired
        case (.assertion, .codeExpired): return .clockSkew
        // At /authorize and the callback, "expired" is the sign-in's own interaction timing out, not a code; a
        // refresh, device or assertion class there is a description's word, not the cause.
        case (.front, .codeExpired), (.front, .codeReused), (.front, .refreshRevoked), (.front, .refreshExpired),
            (.front, .refreshInvalid), (.front, .clockSkew), (.front, .jwtInvalid), (.front, .deviceExpired),
            (.front, .devicePending):
            return .other
        // "was used" of a client secret or an assertion is not a code's reuse.
        case (.otherGrant, .codeReused), (.assertion, .codeReused): return .invalidGrant
        case (.assertion, .codeInvalid): return .invalidGrant
        case (.otherGrant, .refreshRevoked), (.otherGrant, .refreshInvalid), (.otherGrant, .refreshExpired),
            (.otherGrant, .codeInvalid):
            return .invalidGrant
        default: return cls
        }
    }

    /// Lower-case words: every run of letters and digits, joined by single spaces.
    static func words<S: StringProtocol>(_ text: S) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        var space = true
        for scalar in text.unicodeScalars {
            if scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) {
                out.unicodeScalars.append(contentsOf: scalar.properties.lowercaseMapping.unicodeScalars)
                space = false
            } else if !space {
                out.append(" ")
                space = true
            }
        }
        if out.hasSuffix(" ") { out.removeLast() }
        return out
    }

    /// A code without case or punctuation: `InvalidScope`, `invalid_scope` and `invalid-scope` are one code.
    static func squeeze<S: StringProtocol>(_ code: S) -> String { words(code).replacingOccurrences(of: " ", with: "") }

    /// Reads an error out of a JSON body, in any of the shapes providers use: RFC 6749's `error`, a nested
    /// `error` object (Facebook, Google APIs), `errors` lists (Fitbit, Strava), `ok:false` (Slack), or only
    /// `status`/`message`/`reason` fields (HubSpot, Twitch). `status` is the HTTP status: without an `error`
    /// member, a body is an error only when the status says so or a provider code field is present.
    public static func report(json: JSONValue, status: Int? = nil) -> ErrorReport? {
        guard json.isObject else { return nil }
        var text: [String] = []
        var numbers: [Int] = []
        func collect(_ v: JSONValue?, depth: Int = 0) {
            guard let v, depth < 4 else { return }
            for key in describingKeys { if let s = v[key]?.string { text.append(s) } }
            if case .array(let list)? = v["errors"] {
                for e in list.prefix(8) {
                    collect(e, depth: depth + 1)
                    // Strava: {"resource":"AuthorizationCode","field":"code","code":"invalid"}.
                    for key in ["resource", "field"] { if let s = e[key]?.string { text.append(s) } }
                }
            }
            if case .array(let list)? = v["messages"] {
                for m in list.prefix(8) { if let s = m.string { text.append(s) } }
            }
            for key in ["error_subcode", "subcode"] {
                if let n = v[key]?.number.flatMap(Int.init(wholeNumber:)) { numbers.append(n) }
            }
            if case .array(let codes)? = v["error_codes"] {
                numbers += codes.compactMap { $0.number.flatMap(Int.init(wholeNumber:)) }
            }
        }
        collect(json)
        collect(json["response_metadata"])
        // Casdoor's success-shaped error: the message in access_token, for old clients.
        if let t = json["access_token"]?.string, t.utf8.contains(0x20), !t.contains("[masked") { text.append(t) }
        var code: String?
        var dialect = "json"
        switch json["error"] {
        case .object?:
            let nested = json["error"]
            collect(nested, depth: 1)
            if let c = nested?["code"]?.number.flatMap(Int.init(wholeNumber:)) { numbers.append(c) }
            code = nested?["type"]?.string ?? nested?["status"]?.string ?? nested?["code"]?.string
            dialect = "json-nested"
        case .string(let s)?:
            code = s
        default:
            break
        }
        if json["ok"] == .bool(false) { dialect = "slack" }
        let codeFields = ["error_code", "errorCode", "error_type", "errorType", "code", "status"]
        if code == nil || code == "" {
            code = codeFields.lazy.compactMap { json[$0]?.string }.first { !$0.isEmpty && !$0.utf8.contains(0x20) }
            if code == nil, case .array(let list)? = json["errors"], let first = list.first {
                code = codeFields.lazy.compactMap { first[$0]?.string }.first
            }
        }
        let failed =
            (status ?? 0) >= 400 || json["ok"] == .bool(false) || json["success"] == .bool(false)
            || json["error"] == .bool(true)
        // `"error": null`, `false` or `""` and `"errors": []` say there is none.
        let errorMember: Bool
        switch json["error"] {
        case nil, .null?, .bool(false)?, .string("")?: errorMember = json["error_description"] != nil
        default: errorMember = true
        }
        var errorList = false
        if case .array(let list)? = json["errors"], !list.isEmpty { errorList = true }
        let signal = errorMember || errorList || (failed && (code != nil || !text.isEmpty))
        guard signal else { return nil }
        let joined = text.joined(separator: " ")
        numbers += aadstsCodes(in: joined)
        let description = json["error_description"]?.string ?? text.first
        return ErrorReport(
            code: code ?? "error", description: description, numericCodes: numbers, dialect: dialect, text: text)
    }

    /// The fields whose text says what went wrong, in the many names providers give them.
    static let describingKeys = [
        "error_description", "message", "msg", "reason", "hint", "error_hint", "error_verbose", "detail", "title",
        "error_message", "errorMessage", "error_reason", "errorSummary", "error_summary", "data", "description",
        "errorDescription", "suberror",
    ]

    /// An error from form-style pairs (GitHub's default token response, or a redirect's query).
    public static func report(pairs: [(String, String)], dialect: String) -> ErrorReport? {
        guard let code = pairs.first(where: { $0.0 == "error" })?.1 else { return nil }
        let description = pairs.first { $0.0 == "error_description" }?.1
        let more = pairs.filter { ["error_hint", "error_reason", "error_message", "suberror"].contains($0.0) }.map(\.1)
        return ErrorReport(
            code: code, description: description, numericCodes: aadstsCodes(in: description ?? ""), dialect: dialect,
            text: more)
    }

    /// An error shown as a page: its visible text, and the first error code it names.
    public static func report(page: String) -> ErrorReport? {
        // Parameters a page echoes ("redirect_uri=…" under "Request Details") are not its message.
        let visible = HTMLText.visible(page).split(separator: " ").filter { !$0.contains("=") }.joined(separator: " ")
        guard !visible.isEmpty else { return nil }
        let numbers = aadstsCodes(in: visible)
        // "Error 400: redirect_uri_mismatch", "Sorry, there was an error : unauthorized_client".
        let tokens = visible.split { !($0.isLetter || $0.isNumber || $0 == "_") }
        let code = tokens.first { $0.contains("_") && knownCodes.contains(squeeze(String($0))) }.map(String.init)
        return ErrorReport(
            code: code ?? "error_page", description: String(visible.prefix(300)), numericCodes: numbers,
            dialect: "page", text: [String(visible.prefix(2000))])
    }

    static let knownCodes = Set(codeIndex.keys).union(rfcCodes.keys)

    /// Whether a page that answered 200 shows an OAuth error: an error code the tables know, an AADSTS code, or
    /// "Error:" in its opening text (a login page may carry a hidden "Error" for its own form).
    public static func pageShowsError(_ page: String) -> ErrorReport? {
        guard let r = report(page: page) else { return nil }
        let opening = HTMLText.visible(page, limit: 4096).prefix(300).lowercased()
        return r.code != "error_page" || !r.numericCodes.isEmpty || opening.has("error:") || opening.has("error :")
            ? r : nil
    }

    /// RFC 6749's catch-all sentences, as word spans: start and end words.
    static let catchAllSpans: [(String, String)] = [
        ("the provided authorization grant", "another client"),
        ("the request is missing a required parameter", "malformed"),
    ]

    static func removingCatchAll(_ words: String) -> (String, Bool) {
        var text = words
        var found = false
        for (start, end) in catchAllSpans {
            while let s = text.range(of: start), let e = text.range(of: end, range: s.upperBound..<text.endIndex) {
                text.removeSubrange(s.lowerBound..<e.upperBound)
                found = true
            }
        }
        return (text, found)
    }

    static func aadstsCodes(in text: String) -> [Int] {
        var result: [Int] = []
        var rest = Substring(text)
        while let r = rest.range(of: "AADSTS") {
            let digits = rest[r.upperBound...].prefix { $0.isASCII && $0.isNumber }
            if let n = Int(digits) { result.append(n) }
            rest = rest[r.upperBound...]
        }
        return result
    }
}
