import GRDB
import Testing

@testable import AuthtapStore

/// The column enums name real columns, cover each table whole, and the snake_case names come out as SQL spells them.
@Suite struct StoredColumnTests {
    @Test func snakeCase() {
        #expect(ExchangeColumn.snakeCase("sessionID") == "session_id")
        #expect(ExchangeColumn.snakeCase("clientTLS") == "client_tls")
        #expect(ExchangeColumn.snakeCase("requestBodyDecodedSize") == "request_body_decoded_size")
        #expect(ExchangeColumn.snakeCase("tlsMs") == "tls_ms")
        #expect(ExchangeColumn.snakeCase("id") == "id")
    }

    @Test func enumsMatchTheSchema() throws {
        let database = try AppDatabase.inMemory()
        try database.writer.read { db in
            let exchange = try Row.fetchAll(db, sql: "SELECT name FROM pragma_table_info('exchange')").map {
                $0[0] as String
            }
            #expect(ExchangeColumn.allCases.map(\.name).sorted() == exchange.sorted())
            let tunnel = try Row.fetchAll(db, sql: "SELECT name FROM pragma_table_info('tunnel')").map {
                $0[0] as String
            }
            #expect(TunnelColumn.allCases.map(\.name).sorted() == tunnel.sorted())
        }
        #expect(ExchangeColumn.allCases.enumerated().allSatisfy { $0.offset == $0.element.index })
    }
}
