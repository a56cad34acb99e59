import AuthtapModel
import AuthtapOAuth
import Foundation

/// What the rules read about one recorded (masked) exchange, computed once.
final class ExchangeFacts {
    let ex: Exchange
    let id: Int64
    let start: Date
    let path: String
    let method: String
    let status: Int?
    let roles: Set<OAuthRole>
    let contentType: String
    /// The response body parsed as JSON, when it is meant to be (or looks like) JSON.
    let json: Result<JSONValue, JSONValue.ParseError>?
    /// The error the server reported here, whatever its dialect.
    let error: ErrorReport?
    let errorClass: ErrorClass?
    let errorSource: ProviderErrorEntry?
    let grantType: String?
    /// For a sign-in step: the parameters of the authorization request it carries (its `next`, its Referer).
    let signIn: [OAuthParam]

    init(_ ex: Exchange) {
        self.ex = ex
        self.id = ex.id ?? 0
        self.start = ex.timings.start
        self.path = String(ex.target.prefix { $0 != "?" && $0 != "#" })
        self.method = ex.method.uppercased()
        self.status = ex.status
        self.roles = Set(ex.roles)
        self.contentType = (ex.responseHeaders.value(of: "content-type") ?? "").lowercased()
        self.grantType = ex.oauthParams.first { $0.name == "grant_type" && $0.location.isRequest }?.value
        self.signIn = roles.contains(.signInStep) ? SignInStep.embeddedRequest(in: ex.oauthParams) : []
        let first = ex.responseBody.bytes.first { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }
        if !roles.isDisjoint(with: Self.apiLike)
            && (contentType.has("json") || first == UInt8(ascii: "{") || first == UInt8(ascii: "["))
        {
            json = JSONValue.parse(ex.responseBody.bytes)
        } else {
            json = nil
        }
        var report: ErrorReport? = nil
        if case .success(let value)? = json {
            report = ProviderErrors.report(json: value, status: ex.status)
        } else if !ex.responseBody.bytes.isEmpty,
            contentType.has("x-www-form-urlencoded")
                || (contentType.hasPrefix("text/plain") && Self.looksLikeForm(ex.responseBody.bytes))
        {
            report = ProviderErrors.report(pairs: Self.pairs(ex.responseBody.bytes), dialect: "form")
        }
        if report == nil, roles.contains(.authorizationResponse) {
            let location = ex.oauthParams.filter { $0.location.isWithin(.responseLocation) }.map { ($0.name, $0.value) }
            report = ProviderErrors.report(pairs: location, dialect: "location")
        }
        if report == nil, roles.contains(.callback) {
            let query = ex.oauthParams.filter { $0.location.isRequest }.map { ($0.name, $0.value) }
            report = ProviderErrors.report(pairs: query, dialect: "callback")
        }
        // An error page where the browser asked for authorization: what it shows is the server's error.
        if report == nil, roles.contains(.authorizationRequest), !ex.responseBody.bytes.isEmpty,
            !(300..<400).contains(ex.status ?? 0)
        {
            if case .success(let value) = JSONValue.parse(ex.responseBody.bytes) {
                report = ProviderErrors.report(json: value, status: ex.status)
            } else {
                let page = String(decoding: ex.responseBody.bytes.prefix(65536), as: UTF8.self)
                report =
                    (ex.status ?? 0) >= 400 ? ProviderErrors.report(page: page) : ProviderErrors.pageShowsError(page)
            }
        }
        self.error = report
        let leg = Self.leg(roles: roles, grantType: grantType)
        if let report {
            let (cls, entry) = ProviderErrors.classify(report, leg: leg)
            // A 5xx is the server failing, whatever words came with it.
            let failed =
                (ex.status ?? 0) >= 500 && [.invalidRequest, .other, .invalidGrant, .codeInvalid].contains(cls)
            errorClass = failed ? .serverError : cls
            errorSource = entry
        } else {
            errorClass = nil
            errorSource = nil
        }
    }

    /// The leg an error answered, for the words that mean different things on different legs.
    static func leg(roles: Set<OAuthRole>, grantType: String?) -> ProviderErrors.Leg {
        guard roles.contains(.token) else {
            let front: Set<OAuthRole> = [.authorizationRequest, .authorizationResponse, .callback]
            return roles.isDisjoint(with: front) ? .other : .front
        }
        switch grantType {
        case "authorization_code"?: return .code
        case "refresh_token"?: return .refresh
        case "urn:ietf:params:oauth:grant-type:device_code"?: return .device
        case "urn:ietf:params:oauth:grant-type:jwt-bearer"?, "urn:ietf:params:oauth:grant-type:saml2-bearer"?:
            return .assertion
        case nil: return .code
        default: return .otherGrant
        }
    }

    /// What the client application's callback page complains of, read from its body (a framework's error page,
    /// JSON or text): only its state-mismatch classes are used.
    var callbackComplaint: ErrorReport? {
        guard roles.contains(.callback), !ex.responseBody.bytes.isEmpty else { return nil }
        let text = String(decoding: ex.responseBody.bytes.prefix(65536), as: UTF8.self)
        // Every state error the table knows names the state, CSRF, a correlation or the authorization request.
        let lower = text.lowercased()
        guard ["state", "csrf", "correlation", "authorization_request"].contains(where: { lower.has($0) }) else {
            return nil
        }
        if case .success(let value)? = json, let r = ProviderErrors.report(json: value, status: 400) { return r }
        return ProviderErrors.report(page: text)
    }

    func param(_ name: String, _ prefix: ParamLocation) -> OAuthParam? {
        ex.oauthParams.first { $0.name == name && $0.location.isWithin(prefix) }
    }
    func value(_ name: String, _ prefix: ParamLocation) -> String? { param(name, prefix)?.value }
    func fingerprint(_ name: String, _ prefix: ParamLocation) -> String? { param(name, prefix)?.fingerprint }

    var isRefresh: Bool { grantType == "refresh_token" }
    var isCodeGrant: Bool { grantType == "authorization_code" }
    var is2xx: Bool { status.map { (200..<300).contains($0) } ?? false }

    /// A token response that carries an access token and no error.
    var tokenSucceeded: Bool {
        guard is2xx, error == nil, case .success(let v)? = json else { return false }
        return v["access_token"] != nil
    }

    /// The client_id this request presented (query, body, or Basic credentials).
    var clientID: String? {
        value("client_id", .request)
    }

    /// The title of an HTML body, if any.
    var htmlTitle: String? {
        let text = String(decoding: ex.responseBody.bytes.prefix(65536), as: UTF8.self)
        guard let open = text.range(of: "<title", options: .caseInsensitive),
            let gt = text[open.upperBound...].firstIndex(of: ">"),
            let close = text[gt...].range(of: "</title>", options: .caseInsensitive)
        else { return nil }
        let title = text[text.index(after: gt)..<close.lowerBound].split(whereSeparator: \.isWhitespace).joined(
            separator: " ")
        return title.isEmpty ? nil : String(title.prefix(160))
    }

    var bodyText: String { String(decoding: ex.responseBody.bytes.prefix(65536), as: UTF8.self) }

    /// A JWT's header and claims as the masked body still shows them (the signature is masked).
    func jwt(_ name: String) -> (header: JSONValue, claims: JSONValue, raw: String)? {
        guard case .success(let v)? = json, let token = v[name]?.string else { return nil }
        let parts = token.split(separator: ".", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, let h = JWT.decodeSegment(parts[0]), let c = JWT.decodeSegment(parts[1]),
            case .success(let header) = JSONValue.parse(Array(h)), case .success(let claims) = JSONValue.parse(Array(c))
        else { return nil }
        return (header, claims, token)
    }

    /// The server's `Date` header.
    var serverDate: Date? {
        ex.responseHeaders.value(of: "date").flatMap(HTTPDate.parse)
    }

    static let apiLike: Set<OAuthRole> = [
        .token, .userinfo, .introspection, .deviceAuthorization, .pushedAuthorizationRequest, .revocation, .discovery,
        .jwks,
    ]
    static let endpoints: Set<OAuthRole> = [
        .token, .userinfo, .introspection, .deviceAuthorization, .pushedAuthorizationRequest,
    ]

    static func looksLikeForm(_ bytes: [UInt8]) -> Bool {
        guard bytes.contains(UInt8(ascii: "=")) else { return false }
        return !bytes.contains { $0 == 0x20 || $0 == 0x0A || $0 == UInt8(ascii: "<") || $0 == UInt8(ascii: "{") }
    }

    static func pairs(_ bytes: [UInt8]) -> [(String, String)] {
        bytes.split(separator: UInt8(ascii: "&")).compactMap { part in
            guard let eq = part.firstIndex(of: UInt8(ascii: "=")) else { return nil }
            return (
                FormCoding.decode(String(decoding: part[..<eq], as: UTF8.self)),
                FormCoding.decode(String(decoding: part[(eq + 1)...], as: UTF8.self))
            )
        }
    }
}

extension String {
    /// Substring test on UTF-8 bytes (String.contains(String) goes through Foundation on Linux).
    func has(_ needle: String) -> Bool {
        var hay = self, pin = needle
        return hay.withUTF8 { h in
            pin.withUTF8 { n in
                guard !n.isEmpty else { return true }
                guard h.count >= n.count else { return false }
                let first = n[0]
                var i = 0
                let last = h.count - n.count
                while i <= last {
                    if h[i] == first {
                        var k = 1
                        while k < n.count, h[i + k] == n[k] { k += 1 }
                        if k == n.count { return true }
                    }
                    i += 1
                }
                return false
            }
        }
    }
}
