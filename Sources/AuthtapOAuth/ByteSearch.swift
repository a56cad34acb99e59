#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Substring search over bytes, for the masker's, the token scanner's and the JWT ledger's needs: no Foundation
/// bridging (Foundation's `contains` goes through NSString) and no copy of the haystack.
enum ByteSearch {
    /// Whether `needle` occurs in `hay`; an empty needle occurs everywhere.
    static func contains(_ hay: UnsafeBufferPointer<UInt8>, _ needle: UnsafeBufferPointer<UInt8>) -> Bool {
        guard !needle.isEmpty else { return true }
        guard hay.count >= needle.count, let h = hay.baseAddress, let n = needle.baseAddress else { return false }
        // memmem is a GNU extension Swift's Glibc module does not export: memchr for the first byte, memcmp after.
        let first = Int32(n.pointee)
        var start = 0
        let last = hay.count - needle.count
        while start <= last {
            guard let hit = memchr(h + start, first, last - start + 1) else { return false }
            let at = h.distance(to: hit.assumingMemoryBound(to: UInt8.self))
            if memcmp(h + at, n, needle.count) == 0 { return true }
            start = at + 1
        }
        return false
    }

    static func contains(_ hay: [UInt8], _ needle: String) -> Bool {
        var needle = needle
        return hay.withUnsafeBufferPointer { h in needle.withUTF8 { contains(h, $0) } }
    }
}

extension String {
    /// Substring search on the UTF-8 bytes (`ByteSearch`): it runs on the writer's path for every exchange.
    func utf8Contains(_ needle: String) -> Bool {
        var hay = self, needle = needle
        return hay.withUTF8 { h in needle.withUTF8 { ByteSearch.contains(h, $0) } }
    }
}
