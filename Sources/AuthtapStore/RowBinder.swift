import GRDB
import GRDBSQLite

/// One row's values for the exchange insert: scalars kept as they are, text and blobs appended to
/// one byte arena (reused from row to row) and bound in place once the row is complete.
struct RowBinder {
    enum Slot {
        case null
        case int(Int64)
        case double(Double)
        case text(offset: Int, count: Int)
        case blob(offset: Int, count: Int)
    }
    private var slots: [Slot] = []
    private var arena: [UInt8] = []

    mutating func start() {
        slots.removeAll(keepingCapacity: true)
        arena.removeAll(keepingCapacity: true)
        // Never empty: an empty text then still points into the arena (a null pointer would bind NULL).
        arena.append(0)
    }
    mutating func int(_ v: Int64?) { slots.append(v.map { .int($0) } ?? .null) }
    mutating func bool(_ v: Bool) { slots.append(.int(v ? 1 : 0)) }
    mutating func double(_ v: Double?) { slots.append(v.map { .double($0) } ?? .null) }
    mutating func text(_ v: String?) {
        guard let v else { return slots.append(.null) }
        let offset = arena.count
        arena.append(contentsOf: v.utf8)
        slots.append(.text(offset: offset, count: arena.count - offset))
    }
    /// Text written straight into the arena (the headers and params JSON).
    mutating func json(_ write: (inout [UInt8]) -> Void) {
        let offset = arena.count
        write(&arena)
        slots.append(.text(offset: offset, count: arena.count - offset))
    }
    /// An empty body is stored as NULL.
    mutating func blob(_ v: [UInt8]) {
        if v.isEmpty { return slots.append(.null) }
        let offset = arena.count
        arena.append(contentsOf: v)
        slots.append(.blob(offset: offset, count: v.count))
    }

    /// Binds every slot (1-based, in order) and steps once; returns SQLite's result code.
    func execute(_ statement: SQLiteStatement) -> Int32 {
        sqlite3_reset(statement)
        return arena.withUnsafeBufferPointer { buffer -> Int32 in
            let base = buffer.baseAddress!
            // SQLite's lengths are Int32: a row that large is refused with SQLITE_TOOBIG, not a trap.
            guard buffer.count <= Int(Int32.max) else { return SQLITE_TOOBIG }
            for (i, slot) in slots.enumerated() {
                let index = Int32(i + 1)
                let code: Int32
                switch slot {
                case .null: code = sqlite3_bind_null(statement, index)
                case .int(let v): code = sqlite3_bind_int64(statement, index, v)
                case .double(let v): code = sqlite3_bind_double(statement, index, v)
                case .text(let offset, let count):
                    // nil destructor = SQLITE_STATIC: the arena outlives the step.
                    code = (base + offset).withMemoryRebound(to: CChar.self, capacity: max(count, 1)) {
                        sqlite3_bind_text(statement, index, $0, Int32(count), nil)
                    }
                case .blob(let offset, let count):
                    code = sqlite3_bind_blob(statement, index, base + offset, Int32(count), nil)
                }
                if code != SQLITE_OK { return code }
            }
            return sqlite3_step(statement)
        }
    }
}
