import AuthtapModel
import AuthtapStore
import Foundation
import Synchronization

/// Collects records from the dissector thread and stores them in batches.
final class HandshakeSink: Sendable {
    private struct Pending {
        var records: [HandshakeRecord] = []
        var count = 0
    }

    private let pending = Mutex(Pending())
    private let database: AppDatabase
    private let session: Int64
    private let quiet: Bool

    /// Records received so far, stored or about to be.
    var count: Int { pending.withLock { $0.count } }

    init(database: AppDatabase, session: Int64, quiet: Bool) {
        self.database = database
        self.session = session
        self.quiet = quiet
    }

    func add(_ r: HandshakeRecord) {
        if !quiet { FileHandle.standardOutput.write(Data((HandshakeLine.format(r) + "\n").utf8)) }
        let full = pending.withLock { p in
            p.records.append(r)
            p.count += 1
            return p.records.count >= 256
        }
        if full { flush() }
    }

    func flush() {
        let batch = pending.withLock { p in
            let batch = p.records
            p.records.removeAll()
            return batch
        }
        do { try database.insert(handshakes: batch, session: session) } catch {
            let reason = TerminalText.escape("\(error)")
            FileHandle.standardError.write(Data("authtap: could not store \(batch.count) handshakes: \(reason)\n".utf8))
        }
    }
}
