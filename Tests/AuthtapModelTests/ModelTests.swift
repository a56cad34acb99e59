import Foundation
import Testing

@testable import AuthtapModel

/// Encodes one value the way the store, `--format json` and HAR comments do.
private func json<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}

@Test func everyNamedLocationReadsBackAsItself() throws {
    for location in ParamLocation.named {
        #expect(ParamLocation(rawValue: location.rawValue) == location)
        #expect(try json(location) == "\"\(location.rawValue)\"")
        #expect(try JSONDecoder().decode(ParamLocation.self, from: Data(json(location).utf8)) == location)
    }
    #expect(Set(ParamLocation.named.map(\.rawValue)).count == ParamLocation.named.count)
}

@Test func anUnknownPathSurvivesAReadAndAWrite() throws {
    let read = try JSONDecoder().decode(ParamLocation.self, from: Data(#""request.header.x-later.query""#.utf8))
    #expect(read == .other("request.header.x-later.query"))
    #expect(try json(read) == #""request.header.x-later.query""#)
    #expect(ParamLocation(rawValue: "derived") == .derived)
    #expect(ParamLocation.other("derived") == .derived)
}

@Test func locationsNestAsTheirPathsDo() {
    #expect(ParamLocation.requestTarget.query == .requestTargetQuery)
    #expect(ParamLocation.requestTarget.fragment.rawValue == "request.target.fragment")
    #expect(ParamLocation.requestHeader.authorization == .requestHeaderAuthorization)
    #expect(ParamLocation.response.authorization.rawValue == "response.authorization")
    #expect(ParamLocation.response.header("location") == .responseLocation)
    #expect(ParamLocation.response.header("location").query == .responseLocationQuery)
    #expect(ParamLocation.requestHeader.header("content-location").fragment == .requestHeaderContentLocationFragment)
    #expect(ParamLocation.unrecorded.query == .other(".query"))
    #expect(ParamLocation.responseLocationQuery.isWithin(.responseLocation))
    #expect(ParamLocation.requestTargetFragment.isWithin(.requestTarget))
    #expect(!ParamLocation.requestBody.isWithin(.requestTarget))
    #expect(ParamLocation.requestHeaderAuthorization.isRequest && ParamLocation.requestBody.isRequest)
    #expect(!ParamLocation.responseBody.isRequest && !ParamLocation.derived.isRequest)
}

@Test func anOAuthParamEncodesItsLocationAsThePlainPath() throws {
    let p = OAuthParam(location: .requestHeaderAuthorization, name: "client_id", value: "app")
    #expect(try json(p) == #"{"location":"request.header.authorization","name":"client_id","value":"app"}"#)
}

@Test func aRuleIDIsItsStringInJSONAndInOrder() throws {
    let f = Finding(rule: "code-reuse", severity: .error, title: "t", explanation: "e", fix: "f", exchanges: [2, 3])
    #expect(try json(f).contains(#""rule":"code-reuse""#))
    #expect(try JSONDecoder().decode(Finding.self, from: Data(json(f).utf8)) == f)
    #expect(f.key == "code-reuse|t|2,3")
    #expect("\(f.rule)" == "code-reuse")
    let ids: [RuleID] = ["tls-fault", "clock-skew", "code-reuse"]
    #expect(ids.sorted().map(\.rawValue) == ["clock-skew", "code-reuse", "tls-fault"])
}
