import Foundation
import GRDB

/// One row of `session`.
public struct SessionRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "session"
    public var id: Int64?
    public var startedAt: Date
    public var endedAt: Date?
    public var version: String
    public var arguments: String
    public var listen: String?
    public var recorded: Int
    public var dropped: Int
    /// `forward` or `reverse`.
    public var mode: String
    /// Reverse mode: one line per listener, `https://HOST:PORT -> URL`.
    public var upstreams: String?

    enum CodingKeys: String, CodingKey {
        case id, version, arguments, listen, recorded, dropped, mode, upstreams
        case startedAt = "started_at", endedAt = "ended_at"
    }
    public enum Columns {
        public static let id = Column(CodingKeys.id)
        public static let startedAt = Column(CodingKeys.startedAt)
    }
    public static func databaseDateEncodingStrategy(for column: String) -> DatabaseDateEncodingStrategy {
        .timeIntervalSince1970
    }
    public static func databaseDateDecodingStrategy(for column: String) -> DatabaseDateDecodingStrategy {
        .timeIntervalSince1970
    }

    public init(startedAt: Date, version: String, arguments: String, listen: String?) {
        self.id = nil
        self.startedAt = startedAt
        self.endedAt = nil
        self.version = version
        self.arguments = arguments
        self.listen = listen
        self.recorded = 0
        self.dropped = 0
        self.mode = "forward"
        self.upstreams = nil
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) {
        id = inserted.rowID
    }
}

extension AppDatabase {
    public func startSession(version: String, arguments: [String], listen: String?) throws -> SessionRecord {
        let args = String(decoding: try JSONEncoder().encode(arguments), as: UTF8.self)
        let session = SessionRecord(startedAt: Date(), version: version, arguments: args, listen: listen)
        return try writer.write { db in try session.inserted(db) }
    }

    public func endSession(_ id: Int64, dropped: Int) throws {
        try writer.write { db in
            try db.execute(
                sql: """
                    UPDATE session SET ended_at = ?, dropped = ?,
                           recorded = (SELECT COUNT(*) FROM exchange WHERE session_id = ?)
                    WHERE id = ?
                    """,
                arguments: [Date().timeIntervalSince1970, dropped, id, id])
        }
    }

    /// A reverse session: its listeners and the upstream each one serves.
    public func setReverse(_ id: Int64, upstreams: [String]) throws {
        try writer.write { db in
            try db.execute(
                sql: "UPDATE session SET mode = 'reverse', upstreams = ? WHERE id = ?",
                arguments: [upstreams.joined(separator: "\n"), id])
        }
    }

    /// The address actually bound (the --listen argument may say port 0).
    public func setListen(_ id: Int64, listen: String) throws {
        try writer.write { db in
            try db.execute(sql: "UPDATE session SET listen = ? WHERE id = ?", arguments: [listen, id])
        }
    }

    /// The port a proxy session listened on, if it was one.
    public func proxyPort(session: Int64) throws -> Int? {
        try reading { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT listen FROM session WHERE id = ?", arguments: [session]),
                let listen = try? StoredRow(row).optionalText(0, "listen"),
                let colon = listen.lastIndex(of: ":")
            else { return nil }
            return Int(listen[listen.index(after: colon)...])
        }
    }

    public func recordDrops(_ id: Int64, dropped: Int) throws {
        try writer.write { db in
            try db.execute(sql: "UPDATE session SET dropped = ? WHERE id = ?", arguments: [dropped, id])
        }
    }

    /// Every session, oldest first; a damaged row is skipped and reported (see `readProblems`).
    public func sessions() throws -> [SessionRecord] {
        try reading { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT id, started_at, ended_at, version, arguments, listen,
                           (SELECT COUNT(*) FROM exchange WHERE session_id = session.id) AS recorded, dropped,
                           mode, upstreams
                    FROM session ORDER BY id
                    """
            ).compactMap { row in
                let r = StoredRow(row)
                do {
                    var s = SessionRecord(
                        startedAt: try r.date(1, "started_at"), version: try r.text(3, "version"),
                        arguments: try r.text(4, "arguments"),
                        listen: try r.optionalText(5, "listen"))
                    s.id = try r.int64(0, "id")
                    s.endedAt = try r.optionalDate(2, "ended_at")
                    s.recorded = try r.count(6, "recorded")
                    s.dropped = try r.count(7, "dropped")
                    s.mode = try r.text(8, "mode")
                    s.upstreams = try r.optionalText(9, "upstreams")
                    return s
                } catch let bad {
                    readProblems.skipped("session", id: r.label(0), bad)
                    return nil
                }
            }
        }
    }
}
