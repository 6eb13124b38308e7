//! Batch errors: the codes this service returns, with their HTTP status and default message.
//! The API crate renders them as Azure's JSON error body.

use http::StatusCode;

macro_rules! error_codes {
    ($($code:ident => ($status:literal, $message:literal),)*) => {
        /// An Azure Batch error code, with its status and default message.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum ErrorCode { $(
            #[doc = $message]
            $code,
        )* }

        impl ErrorCode {
            /// The code as Azure spells it.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$code => stringify!($code),)* }
            }
            /// The HTTP status Azure answers with.
            pub fn status(self) -> StatusCode {
                let status = match self { $(Self::$code => $status,)* };
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            /// Azure's default message.
            pub fn message(self) -> &'static str {
                match self { $(Self::$code => $message,)* }
            }
        }
    };
}

error_codes! {
    // 400
    InvalidQueryParameterValue => (400, "Value for one of the query parameters specified in the request URI is invalid."),
    MissingRequiredQueryParameter => (400, "A query parameter that's mandatory for this request is not specified."),
    UnsupportedQueryParameter => (400, "One of the query parameters specified in the request URI is not supported."),
    InvalidRequestBody => (400, "The specified Request Body is not syntactically valid."),
    MissingRequiredProperty => (400, "A required property was not specified in the request body."),
    InvalidPropertyValue => (400, "The value provided for one of the properties in the request body is invalid."),
    UnsupportedProperty => (400, "One of the properties specified in the request body is not supported."),
    InvalidHeaderValue => (400, "The value for one of the HTTP headers is not in the correct format."),
    InvalidRange => (416, "The range specified is invalid for the current size of the resource."),
    PropertyCannotBeUpdated => (400, "The property cannot be updated."),
    TaskDependenciesNotSpecifiedOnJob => (400, "The specified job does not have usesTaskDependencies set to true, so tasks cannot have dependencies."),
    TaskDependencyListTooLong => (400, "The task's dependency list is too long."),
    InvalidAutoScalingSettings => (400, "The auto scaling settings of the pool are invalid."),
    InvalidJobOperation => (400, "The operation is not valid for the job."),
    CertificateRetired => (400, "The 'Azure Batch Certificates' feature was retired on 02/29/2024."),
    // 403
    AuthenticationFailed => (403, "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature."),
    // 404
    InvalidUri => (404, "The requested URI does not represent any resource on the server."),
    ResourceNotFound => (404, "The specified resource does not exist."),
    PoolNotFound => (404, "The specified pool does not exist."),
    NodeNotFound => (404, "The specified node does not exist."),
    JobNotFound => (404, "The specified job does not exist."),
    JobScheduleNotFound => (404, "The specified job schedule does not exist."),
    TaskNotFound => (404, "The specified task does not exist."),
    FileNotFound => (404, "The specified file does not exist."),
    NodeUserNotFound => (404, "The node user does not exist."),
    ApplicationNotFound => (404, "The specified application does not exist."),
    NodeExtensionNotFound => (404, "The specified extension does not exist on the node."),
    // 405, 411, 413
    UnsupportedHttpVerb => (405, "The resource doesn't support the specified HTTP verb."),
    MissingContentLengthHeader => (411, "The Content-Length header was not specified."),
    RequestBodyTooLarge => (413, "The request body is too large and exceeds the maximum permissible limit."),
    // 409
    PoolExists => (409, "The specified pool already exists."),
    JobExists => (409, "The specified job already exists."),
    TaskExists => (409, "The specified task already exists."),
    JobScheduleExists => (409, "The specified job schedule already exists."),
    NodeUserExists => (409, "The specified node user already exists."),
    JobWithSameIdExists => (409, "A job with the same id exists."),
    PoolBeingDeleted => (409, "The specified pool has been marked for deletion and is being reclaimed."),
    PoolBeingResized => (409, "The specified pool is being resized."),
    PoolNotResizing => (409, "The specified pool is not being resized."),
    JobBeingDeleted => (409, "The specified job has been marked for deletion and is being garbage collected."),
    JobBeingTerminated => (409, "The specified job is being terminated."),
    JobCompleted => (409, "The specified job is already in a completed state."),
    JobDisabled => (409, "The specified job is disabled."),
    JobNotActive => (409, "The specified job is not in an active state."),
    JobScheduleBeingDeleted => (409, "The specified job schedule has been marked for deletion and is being garbage collected."),
    JobScheduleBeingTerminated => (409, "The specified job schedule is being terminated."),
    JobScheduleCompleted => (409, "The specified job schedule is already in a completed state."),
    JobScheduleDisabled => (409, "The specified job schedule is disabled."),
    TaskCompleted => (409, "The specified task is already completed."),
    TaskNotCompleted => (409, "The specified task is not completed."),
    TaskSucceeded => (409, "The specified task completed successfully and cannot be reactivated."),
    TaskFilesUnavailable => (409, "The files of the specified task are not available: it has not run on a node."),
    OperationInvalidForCurrentState => (409, "The operation is not allowed in the current state of the resource."),
    NodeStateUnusable => (409, "The node is not in a state in which the operation is allowed."),
    JobPreparationTaskNotSpecified => (409, "The specified job does not have a job preparation task."),
    // 304 / 412
    ConditionNotMet => (412, "The condition specified using HTTP conditional header(s) is not met."),
    NotModified => (304, "The condition specified using HTTP conditional header(s) is not met."),
    // 5xx
    InternalError => (500, "Server encountered an internal error. Please try again after some time."),
    NotImplemented => (501, "The requested operation is not implemented by Cobalt yet."),
}

/// An error on its way to becoming a Batch JSON error response.
#[derive(Debug)]
pub struct BatchError {
    /// The Azure error code.
    pub code: ErrorCode,
    /// A message replacing the code's default one.
    pub message: Option<String>,
    /// The `values` array: (key, value) details such as `AuthenticationErrorDetail`.
    pub values: Vec<(String, String)>,
}

/// Result type of request handlers.
pub type BatchResult<T> = Result<T, BatchError>;

impl BatchError {
    /// An error with the code's default message.
    pub fn new(code: ErrorCode) -> Self {
        Self {
            code,
            message: None,
            values: Vec::new(),
        }
    }

    /// Replaces the message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Adds a `values` entry.
    pub fn with_value(mut self, key: &str, value: impl Into<String>) -> Self {
        self.values.push((key.to_owned(), value.into()));
        self
    }
}

impl From<ErrorCode> for BatchError {
    fn from(code: ErrorCode) -> Self {
        Self::new(code)
    }
}
