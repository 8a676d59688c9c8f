"""Switchyard router: model catalog, provider adapters, failover and usage events.

Modules, from the wire inwards:

    handlers    the gRPC servicer (thin: decode, call the service, encode)
    service     the call flow: resolve, failover, publish usage
    routing     model string -> ordered candidates (RoutingTable)
    catalog     the live catalog: hot reload, adapter lifecycle
    failover    ordered attempts, first-chunk commit, AllProvidersFailed
    usage       UsageRecorded publishing over JetStream
    providers   the adapter protocol, the registry and one module per provider
    metrics     Prometheus metrics
    config      RouterSettings
    main        serve(settings), the composition root
"""

__all__: list[str] = []
