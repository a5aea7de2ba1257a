"""Envoy configuration generators: pure functions from a push context to xds-protos messages.

Shared by every proxy with the same `ProxyView` (generate once per view, serialize once):
    clusters.outbound_clusters(ctx, view)    CDS  services of the view's Sidecar scope
                                                  (`ctx.services_for`), DestinationRule subsets
                                                  and traffic policy (traffic_policy)
    endpoints.load_assignments(ctx, view)    EDS  endpoints of those services' EDS clusters
    endpoints.load_assignment(ctx, name, view)  EDS  one cluster, for an EDS request by name
    routes.outbound_routes(ctx, view)        RDS  HTTP services, and the VirtualServices bound
                                                  to the mesh that route them (http_routes,
                                                  route_policies, virtual_services)
    listeners.outbound_listeners(ctx, view)  LDS  service ports, protocols and VIPs; TCP and
                                                  TLS VirtualService rules (tcp_routes)
Routers (gateways), per view (the view's labels select the Gateways):
    gateways.merge(ctx, view)                     the selected Gateways' servers by port
    gateways.gateway_listeners(ctx, view, merged) LDS  one listener per port, TLS termination
                                                       (gateway_tls), TCP/TLS routes; unbound
    gateway_routes.gateway_routes(ctx, view, merged)  RDS  bound VirtualServices per server
    gateways.bind(listeners, ip)                  LDS  per proxy: copies on the router's IP
Per proxy (its IP, metadata, and the service instances its own workload backs):
    clusters.inbound_clusters(ctx, proxy)    CDS  instances (or Sidecar ingress) + APP_ADDRESS
    listeners.proxy_listeners(ctx, proxy)    LDS  IP, instances, INTERCEPTION_MODE, HTTP_PROXY_PORT

Proxyless gRPC clients (node metadata GENERATOR: grpc) get their own resources instead:
    grpc_proxyless                           LDS api_listeners, RDS, CDS, EDS as grpcio's xDS
                                                  client accepts them

Nothing here does I/O; equal inputs give messages that serialize (deterministically) to equal
bytes, so results can be cached and shared.
"""
