import Testing

@testable import AuthtapOAuth

/// The one substring search: checked against a naive scan on every split of a few texts.
@Test(arguments: [
    ("", ""), ("abc", ""), ("", "a"), ("abc", "abcd"), ("abc", "abc"), ("xxabc", "abc"), ("abcxx", "abc"),
    ("aaab", "aab"), ("abababac", "ababac"), ("{\"keys\":[]}", "\"keys\""), ("{\"key\":1}", "\"keys\""),
    ("T3BlbkF T3BlbkFJ", "T3BlbkFJ"), ("T3BlbkF", "T3BlbkFJ"),
])
func byteSearchAgreesWithANaiveScan(hay: String, needle: String) {
    let h = Array(hay.utf8), n = Array(needle.utf8)
    let naive =
        n.isEmpty
        || (h.count >= n.count && (0...(h.count - n.count)).contains { h[$0..<($0 + n.count)].elementsEqual(n) })
    #expect(ByteSearch.contains(h, needle) == naive)
    #expect(hay.utf8Contains(needle) == naive)
    // Inside a larger buffer, only the slice counts.
    let padded = Array("\(needle)|".utf8) + h + Array("|\(needle)".utf8)
    padded.withUnsafeBufferPointer { b in
        let inner = UnsafeBufferPointer(rebasing: b[(n.count + 1)..<(n.count + 1 + h.count)])
        var needle = needle
        #expect(needle.withUTF8 { ByteSearch.contains(inner, $0) } == naive)
    }
}
