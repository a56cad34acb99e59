import Foundation

/// A table's columns as one enum, in the order a query selects them: the query's column list is made from the
/// enum, and a read names its column (`r.int64(ExchangeColumn.port)`) yet costs an array index, not a name
/// lookup, which dominates the cost of loading a large capture.
protocol StoredColumn: CaseIterable, RawRepresentable where RawValue == Int, AllCases == [Self] {}

extension StoredColumn {
    var index: Int { rawValue }

    /// The SQL name: the case name in snake_case (`sessionID` → `session_id`, `clientTLS` → `client_tls`).
    var name: String { Self.snakeCase(String(describing: self)) }

    /// Every column, comma-separated, for `SELECT`.
    static var selectList: String { allCases.map(\.name).joined(separator: ", ") }

    static func snakeCase(_ camel: String) -> String {
        var out = ""
        var previousIsLower = false
        for c in camel {
            if c.isUppercase, previousIsLower { out.append("_") }
            previousIsLower = c.isLowercase || c.isNumber
            out += c.lowercased()
        }
        return out
    }
}

/// The exchange table's columns as `exchanges(...)` reads them.
enum ExchangeColumn: Int, StoredColumn {
    case id, sessionID, connectionID, clientAddress, scheme, host, port, method, target, httpVersion, status
    case requestHeaders, responseHeaders, requestBody, requestBodySize, responseBody, responseBodySize
    case clientTLS, upstreamTLS, insecureUpstream, connectionReused, startedAt, connectMs, tlsMs
    case requestSentMs, firstByteMs, endMs, errorKind, tlsFailure, errorDetail, oauthRoles, oauthParams
    case requestBodyTruncated, requestBodyEncoding, requestBodyDecodedSize, requestBodyNote
    case responseBodyTruncated, responseBodyEncoding, responseBodyDecodedSize, responseBodyNote
}

/// The tunnel table's columns as `tunnels(...)` reads them.
enum TunnelColumn: Int, StoredColumn {
    case id, sessionID, connectionID, clientAddress, host, port, intercepted, startedAt
    case durationMs, bytesFromClient, bytesFromUpstream, ending, errorKind, errorDetail
}

extension StoredRow {
    /// Reads by index and names the column only when the read fails: a name costs a reflection and a case
    /// conversion, and only an error report needs it.
    func named<C: StoredColumn, T>(_ c: C, _ read: (Int) throws(BadColumn) -> T) throws(BadColumn) -> T {
        do {
            return try read(c.index)
        } catch {
            throw BadColumn(column: c.name, found: error.found)
        }
    }

    func label<C: StoredColumn>(_ c: C) -> String { label(c.index) }
    func optionalInt64<C: StoredColumn>(_ c: C) throws(BadColumn) -> Int64? {
        try named(c) { i throws(BadColumn) in try optionalInt64(i, "") }
    }
    func int64<C: StoredColumn>(_ c: C) throws(BadColumn) -> Int64 {
        try named(c) { i throws(BadColumn) in try int64(i, "") }
    }
    func optionalInt<C: StoredColumn>(_ c: C) throws(BadColumn) -> Int? {
        try named(c) { i throws(BadColumn) in try optionalInt(i, "") }
    }
    func int<C: StoredColumn>(_ c: C) throws(BadColumn) -> Int {
        try named(c) { i throws(BadColumn) in try int(i, "") }
    }
    func optionalCount<C: StoredColumn>(_ c: C) throws(BadColumn) -> Int? {
        try named(c) { i throws(BadColumn) in try optionalCount(i, "") }
    }
    func count<C: StoredColumn>(_ c: C) throws(BadColumn) -> Int {
        try named(c) { i throws(BadColumn) in try count(i, "") }
    }
    func bool<C: StoredColumn>(_ c: C) throws(BadColumn) -> Bool {
        try named(c) { i throws(BadColumn) in try bool(i, "") }
    }
    func optionalDouble<C: StoredColumn>(_ c: C) throws(BadColumn) -> Double? {
        try named(c) { i throws(BadColumn) in try optionalDouble(i, "") }
    }
    func double<C: StoredColumn>(_ c: C) throws(BadColumn) -> Double {
        try named(c) { i throws(BadColumn) in try double(i, "") }
    }
    func date<C: StoredColumn>(_ c: C) throws(BadColumn) -> Date {
        try named(c) { i throws(BadColumn) in try date(i, "") }
    }
    func optionalText<C: StoredColumn>(_ c: C) throws(BadColumn) -> String? {
        try named(c) { i throws(BadColumn) in try optionalText(i, "") }
    }
    func text<C: StoredColumn>(_ c: C) throws(BadColumn) -> String {
        try named(c) { i throws(BadColumn) in try text(i, "") }
    }
    func bytes<C: StoredColumn>(_ c: C) throws(BadColumn) -> [UInt8] {
        try named(c) { i throws(BadColumn) in try bytes(i, "") }
    }
}
