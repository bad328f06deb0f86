/**
 * Culex: an embeddable MQTT broker for Node.js.
 *
 * ```ts
 * import { Broker, tcp } from 'culex-mqtt'
 * const broker = new Broker()
 * await broker.listen(tcp({ port: 1883 }))
 * ```
 * @packageDocumentation
 */
export { Broker } from './broker.js'
export type { BrokerHealth, DrainOptions, MessageHandler, PublishOptions, PublishProperties, PublishResult, SubscribeOptions } from './broker.js'
export type { BridgeDirection, BridgeHandle, BridgeOptions, BridgeTlsOptions, BridgeTopic } from './bridge/options.js'
export type { BrokerStats, DenialKind, DropReason, PacketTypeName, SocketRefusal } from './metrics/stats.js'
export type { BrokerEvents, ConnectRefusal, HookName, HostErrorSource } from './hooks/events.js'
export type {
  AcceptConnectionHook,
  AcceptRequest,
  AuthenticateHook,
  AuthenticateRequest,
  AuthenticateResult,
  AuthorizeDeliverHook,
  AuthorizePublishHook,
  AuthorizeSubscribeHook,
  Client,
  ClientSummary,
  ConnectionInfo,
  DisconnectReason,
  EnhancedAuthenticateHook,
  EnhancedAuthRequest,
  EnhancedAuthResult,
  Message,
  PeerCertificate,
  SessionSummary,
} from './hooks/types.js'
export { DEFAULT_CAPABILITIES, DEFAULT_LIMITS } from './options.js'
export type { Ban, BrokerOptions, Capabilities, FlappingOptions, Limits, Logger, ProtectionOptions, SysOptions } from './options.js'
export type { ClusterOptions } from './cluster/options.js'
export type {
  Awaitable,
  DeliveryState,
  PersistenceAdapter,
  PersistenceOp,
  RestoredDelivery,
  RestoredSession,
  RestoredState,
  StoredMessage,
} from './persistence/adapter.js'
export { MemoryPersistence } from './persistence/memory.js'
export { mosquittoAuth, MosquittoFileError } from './auth/mosquitto/index.js'
export type { MosquittoAuth, MosquittoAuthOptions } from './auth/mosquitto/index.js'
export { dashboard, DASHBOARD_REQUEST_HEADER } from './dashboard/handler.js'
export type {
  AdminCredentials,
  AuthorizeAdminHook,
  DashboardClient,
  DashboardClientDetail,
  DashboardHandler,
  DashboardOptions,
  DashboardSource,
  DashboardStats,
} from './dashboard/handler.js'
export { operationsHandler } from './http/handler.js'
export type { OperationsHandler, OperationsHandlerOptions, OperationsSource } from './http/handler.js'
export { prometheusText, PROMETHEUS_CONTENT_TYPE } from './http/prometheus-text.js'
export { startOperationsServer } from './http/server.js'
export type { OperationsServer, OperationsServerOptions } from './http/server.js'
export type { Properties, ProtocolVersion, QoS, Subscription, WillMessage } from './protocol/packets.js'
export { ConnackReturnCode, ReasonCode } from './protocol/reason-codes.js'
export { tcp } from './transports/tcp.js'
export type { TcpOptions } from './transports/tcp.js'
export type { ProxyProtocolOptions } from './transports/proxy-protocol.js'
export { tls } from './transports/tls.js'
export type { TlsOptions } from './transports/tls.js'
export { unix } from './transports/unix.js'
export type { UnixOptions } from './transports/unix.js'
export { websocket } from './transports/websocket.js'
export type { WebSocketOptions } from './transports/websocket.js'
export type { ConnectionHandler, ListenContext, Listener, Transport } from './transports/transport.js'
