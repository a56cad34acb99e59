import Synchronization

/// The answer a classifier gave for a name, kept: real traffic repeats a few hundred parameter, header and key
/// names, and splitting each one into words again is most of the masker's work.
///
/// Bounded by entries and bytes: only ASCII names of at most 128 bytes go in (String equality is canonical
/// equivalence, which can join two non-ASCII names whose bytes split into different words), and a flood of
/// distinct names, which the traffic can send, empties the cache instead of growing it.
final class NameCache<Key: CacheKey, Value: Sendable>: Sendable {
    private let entries = Mutex<[Key: Value]>([:])
    private let limit: Int
    private let maximumLength: Int

    init(limit: Int = 4096, maximumLength: Int = 128) {
        self.limit = limit
        self.maximumLength = maximumLength
    }

    /// The kept answer for `name`, or `compute(name)`, kept when the name may be.
    func value(for name: Key, compute: (Key) -> Value) -> Value {
        if let known = known(name) { return known }
        let value = compute(name)
        keep(value, for: name)
        return value
    }

    func known(_ name: Key) -> Value? {
        guard mayKeep(name) else { return nil }
        return entries.withLock { $0[name] }
    }

    func keep(_ value: Value, for name: Key) {
        guard mayKeep(name) else { return }
        entries.withLock { entries in
            if entries.count >= limit { entries.removeAll(keepingCapacity: true) }
            entries[name] = value
        }
    }

    private func mayKeep(_ name: Key) -> Bool { name.cacheLength <= maximumLength && name.isASCIIKey }
}

/// What `NameCache` needs of a key beyond equality: its length in bytes, and whether it is all ASCII (only then
/// does String equality, canonical equivalence, mean equal bytes).
protocol CacheKey: Hashable, Sendable {
    var cacheLength: Int { get }
    var isASCIIKey: Bool { get }
}

extension String: CacheKey {
    var cacheLength: Int { utf8.count }
    var isASCIIKey: Bool { isASCII }
}
