import AuthtapDissector
import Foundation
import GRDB

extension AppDatabase {
    public func insert(handshakes: [HandshakeRecord], session: Int64) throws {
        guard !handshakes.isEmpty else { return }
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        encoder.dateEncodingStrategy = .iso8601
        try writer.write { db in
            let st = try db.cachedStatement(sql: """
                INSERT INTO handshake (session_id, client, client_port, server, server_port, outcome, side, alert, encrypted_alert,
                  sni, started_at, ended_at, duration_ms, first_packet, last_packet, detail, facts)
                VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
                """)
            for h in handshakes {
                let facts = String(decoding: try encoder.encode(h), as: UTF8.self)
                try st.execute(arguments: [
                    session, h.client, h.clientPort, h.server, h.serverPort, h.outcome.rawValue, h.side, h.alert, h.encryptedAlert,
                    h.sni, Double(h.startMicros) / 1e6, Double(h.endMicros) / 1e6, h.durationMs, h.firstPacket, h.lastPacket,
                    h.detail, facts,
                ])
            }
        }
    }

    /// Handshake records with their row ids, oldest first.
    public func handshakes(session: Int64? = nil) throws -> [(id: Int64, session: Int64, record: HandshakeRecord)] {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try writer.read { db in
            let rows = try Row.fetchAll(db, sql: "SELECT id, session_id, facts FROM handshake" + (session == nil ? "" : " WHERE session_id = ?") + " ORDER BY id",
                                        arguments: session.map { [$0] } ?? [])
            return rows.compactMap { row in
                guard let record = try? decoder.decode(HandshakeRecord.self, from: Data((row[2] as String).utf8)) else { return nil }
                return (row[0], row[1], record)
            }
        }
    }
}
