import Foundation
import Testing

@testable import AuthtapHAR

/// Every input the HAR fuzz target ever crashed on (Tests/fuzz/regressions/HAR) goes through the importer in the
/// ordinary suite too, not only in fuzz runs.
@Test func harFuzzRegressionsImport() throws {
    let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("fuzz/regressions/HAR")
    let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted()
    #expect(names.count >= 2)
    for name in names {
        let bytes = try [UInt8](Data(contentsOf: folder.appendingPathComponent(name)))
        switch HARImport.parse(bytes) {
        case .success(let result): #expect(!result.exchanges.isEmpty, "\(name)")
        case .failure(let failure): Issue.record("\(name): \(failure)")
        }
    }
}
