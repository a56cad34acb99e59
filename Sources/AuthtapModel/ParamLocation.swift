/// Where in an exchange an OAuth parameter was found.
///
/// The raw values are the dotted paths stored in capture files and printed by every output
/// (`request.target.query`, `response.location.fragment`, `derived`), so they never change. A path nests: a URL
/// header's query lies under the header (`response.location.query` is within `response.location`), and
/// questions about a parameter's origin ask `isWithin(_:)`. A path this enum does not name (a capture written by
/// a later version, a test's label) survives as `other`, read and written back unchanged.
public enum ParamLocation: RawRepresentable, Codable, Sendable, Hashable, CustomStringConvertible {
    /// Anywhere in the request (target, headers or body): a scope to search, never a parameter's own location.
    case request
    /// The request's target; its parameters sit in `requestTargetQuery` and `requestTargetFragment`.
    case requestTarget
    case requestTargetQuery
    case requestTargetFragment
    /// The request's headers; parameters sit in the credential or URL header that carried them.
    case requestHeader
    case requestHeaderAuthorization
    case requestHeaderLocation, requestHeaderLocationQuery, requestHeaderLocationFragment
    case requestHeaderReferer, requestHeaderRefererQuery, requestHeaderRefererFragment
    case requestHeaderContentLocation, requestHeaderContentLocationQuery, requestHeaderContentLocationFragment
    case requestHeaderRefresh, requestHeaderRefreshQuery, requestHeaderRefreshFragment
    case requestBody
    /// The response's headers; parameters sit in the credential or URL header that carried them.
    case response
    case responseAuthorization
    case responseLocation, responseLocationQuery, responseLocationFragment
    case responseReferer, responseRefererQuery, responseRefererFragment
    case responseContentLocation, responseContentLocationQuery, responseContentLocationFragment
    case responseRefresh, responseRefreshQuery, responseRefreshFragment
    case responseBody
    /// Computed by authtap, not sent by either side (a verifier's S256 digest, a JWT signature verdict).
    case derived
    /// For masking whose parameters are thrown away (a URL nested in a value, an audit).
    case unrecorded
    /// Any other path, kept as it was read.
    case other(String)

    public var rawValue: String {
        switch self {
        case .request: "request."
        case .requestTarget: "request.target"
        case .requestTargetQuery: "request.target.query"
        case .requestTargetFragment: "request.target.fragment"
        case .requestHeader: "request.header"
        case .requestHeaderAuthorization: "request.header.authorization"
        case .requestHeaderLocation: "request.header.location"
        case .requestHeaderLocationQuery: "request.header.location.query"
        case .requestHeaderLocationFragment: "request.header.location.fragment"
        case .requestHeaderReferer: "request.header.referer"
        case .requestHeaderRefererQuery: "request.header.referer.query"
        case .requestHeaderRefererFragment: "request.header.referer.fragment"
        case .requestHeaderContentLocation: "request.header.content-location"
        case .requestHeaderContentLocationQuery: "request.header.content-location.query"
        case .requestHeaderContentLocationFragment: "request.header.content-location.fragment"
        case .requestHeaderRefresh: "request.header.refresh"
        case .requestHeaderRefreshQuery: "request.header.refresh.query"
        case .requestHeaderRefreshFragment: "request.header.refresh.fragment"
        case .requestBody: "request.body"
        case .response: "response"
        case .responseAuthorization: "response.authorization"
        case .responseLocation: "response.location"
        case .responseLocationQuery: "response.location.query"
        case .responseLocationFragment: "response.location.fragment"
        case .responseReferer: "response.referer"
        case .responseRefererQuery: "response.referer.query"
        case .responseRefererFragment: "response.referer.fragment"
        case .responseContentLocation: "response.content-location"
        case .responseContentLocationQuery: "response.content-location.query"
        case .responseContentLocationFragment: "response.content-location.fragment"
        case .responseRefresh: "response.refresh"
        case .responseRefreshQuery: "response.refresh.query"
        case .responseRefreshFragment: "response.refresh.fragment"
        case .responseBody: "response.body"
        case .derived: "derived"
        case .unrecorded: ""
        case .other(let path): path
        }
    }

    /// Every named case, for the reverse lookup.
    static let named: [ParamLocation] = [
        .request, .requestTarget, .requestTargetQuery, .requestTargetFragment,
        .requestHeader, .requestHeaderAuthorization,
        .requestHeaderLocation, .requestHeaderLocationQuery, .requestHeaderLocationFragment,
        .requestHeaderReferer, .requestHeaderRefererQuery, .requestHeaderRefererFragment,
        .requestHeaderContentLocation, .requestHeaderContentLocationQuery, .requestHeaderContentLocationFragment,
        .requestHeaderRefresh, .requestHeaderRefreshQuery, .requestHeaderRefreshFragment,
        .requestBody,
        .response, .responseAuthorization,
        .responseLocation, .responseLocationQuery, .responseLocationFragment,
        .responseReferer, .responseRefererQuery, .responseRefererFragment,
        .responseContentLocation, .responseContentLocationQuery, .responseContentLocationFragment,
        .responseRefresh, .responseRefreshQuery, .responseRefreshFragment,
        .responseBody, .derived, .unrecorded,
    ]
    private static let byPath: [String: ParamLocation] = Dictionary(
        uniqueKeysWithValues: named.map { ($0.rawValue, $0) }
    )

    /// Never fails: a path no case names becomes `other`, so reading a capture loses nothing.
    public init(rawValue: String) {
        self = Self.byPath[rawValue] ?? .other(rawValue)
    }

    public var description: String { rawValue }

    /// Equal paths are equal locations, however the value was built.
    public static func == (a: ParamLocation, b: ParamLocation) -> Bool { a.rawValue == b.rawValue }
    public func hash(into hasher: inout Hasher) { hasher.combine(rawValue) }

    /// This location is `other` or lies under it: `request.target.query` is within `request.target`.
    public func isWithin(_ other: ParamLocation) -> Bool { rawValue.hasPrefix(other.rawValue) }

    /// Sent by the client (target, headers or body).
    public var isRequest: Bool { isWithin(.request) }

    /// A URL's query string under this location (a target or a URL header).
    public var query: ParamLocation {
        switch self {
        case .requestTarget: .requestTargetQuery
        case .responseLocation: .responseLocationQuery
        default: appending("query")
        }
    }

    /// A URL's fragment under this location.
    public var fragment: ParamLocation {
        switch self {
        case .requestTarget: .requestTargetFragment
        case .responseLocation: .responseLocationFragment
        default: appending("fragment")
        }
    }

    /// The Authorization header under a set of headers.
    public var authorization: ParamLocation {
        switch self {
        case .requestHeader: .requestHeaderAuthorization
        case .response: .responseAuthorization
        default: appending("authorization")
        }
    }

    /// The header named `name` (lowercase) under a set of headers.
    public func header(_ name: String) -> ParamLocation { appending(name) }

    private func appending(_ component: String) -> ParamLocation {
        ParamLocation(rawValue: rawValue + "." + component)
    }
}
