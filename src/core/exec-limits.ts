/** `corral exec`'s limits: plain numbers, shared by the API's schema (which the web console's types read too) and the checks. */
export const EXEC_DEFAULT_TIMEOUT_S = 300;
export const EXEC_MAX_TIMEOUT_S = 86_400;
/** stdin handed to the command: in base64 it fits the API's 1 MiB request body (the agent takes far more) */
export const EXEC_MAX_STDIN = 512 * 1024;
