package policy

import "errors"

func errorsAs(err error, target any) bool { return errors.As(err, target) }

// SafeFunctions are the built-in (pg_catalog) functions every role may
// call: they compute from their arguments only, read no other data, run no
// SQL given as text, touch no files, large objects, settings or other
// servers. Protected columns never reach them unless the role allows the
// column (the analysis refuses masked columns as arguments).
var SafeFunctions = setOf(
	// aggregates and window functions
	"count", "sum", "avg", "min", "max", "stddev", "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp",
	"bool_and", "bool_or", "every", "array_agg", "string_agg", "percentile_cont", "percentile_disc", "mode",
	"row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag", "lead", "first_value",
	"last_value", "nth_value", "corr", "covar_pop", "covar_samp", "regr_slope", "regr_intercept",
	// text
	"lower", "upper", "initcap", "length", "char_length", "character_length", "octet_length", "bit_length",
	"substr", "substring", "trim", "btrim", "ltrim", "rtrim", "left", "right", "replace", "concat", "concat_ws",
	"position", "strpos", "split_part", "lpad", "rpad", "repeat", "reverse", "starts_with", "translate",
	"regexp_replace", "regexp_match", "regexp_matches", "regexp_split_to_array", "regexp_split_to_table",
	"md5", "sha256", "normalize", "to_hex", "ascii", "chr", "quote_ident", "quote_literal", "quote_nullable",
	"format", "string_to_array", "array_to_string", "unistr",
	// numbers
	"abs", "round", "floor", "ceil", "ceiling", "trunc", "mod", "power", "sqrt", "cbrt", "exp", "ln", "log",
	"sign", "div", "width_bucket", "greatest", "least", "random", "numeric", "int4", "int8", "float8", "text",
	// dates and times
	"now", "current_date", "current_timestamp", "localtimestamp", "clock_timestamp", "statement_timestamp",
	"transaction_timestamp", "date_trunc", "date_part", "extract", "age", "make_date", "make_timestamp",
	"make_timestamptz", "make_interval", "to_char", "to_date", "to_timestamp", "to_number", "date_bin",
	"justify_days", "justify_hours", "justify_interval", "isfinite", "timezone",
	// arrays, ranges, json built from arguments
	"array_length", "cardinality", "array_position", "array_positions", "array_append", "array_prepend",
	"array_cat", "array_remove", "array_replace", "unnest", "generate_series", "generate_subscripts",
	"array_lower", "array_upper", "array_ndims", "array_dims",
	"json_build_object", "jsonb_build_object", "json_build_array", "jsonb_build_array", "json_agg", "jsonb_agg",
	"json_object_agg", "jsonb_object_agg", "to_json", "to_jsonb", "row_to_json", "jsonb_pretty",
	"jsonb_extract_path", "jsonb_extract_path_text", "json_extract_path", "json_extract_path_text",
	"jsonb_array_elements", "json_array_elements", "jsonb_each", "json_each", "jsonb_typeof", "json_typeof",
	"coalesce", "nullif", "gen_random_uuid",
	// session information and catalog helpers psql and GUI tools use
	"current_database", "current_schema", "current_schemas", "current_user", "session_user", "version",
	"pg_backend_pid", "pg_table_is_visible", "pg_type_is_visible", "pg_function_is_visible",
	"pg_collation_is_visible", "pg_opclass_is_visible", "pg_operator_is_visible", "pg_ts_config_is_visible",
	"format_type", "pg_get_expr", "pg_get_indexdef", "pg_get_constraintdef", "pg_get_userbyid", "pg_get_viewdef",
	"pg_get_triggerdef", "pg_get_ruledef", "pg_get_function_arguments", "pg_get_function_result",
	"pg_get_function_identity_arguments", "pg_get_partkeydef", "pg_get_statisticsobjdef_columns",
	"pg_get_serial_sequence", "pg_encoding_to_char", "pg_relation_size", "pg_total_relation_size",
	"pg_table_size", "pg_indexes_size", "pg_size_pretty", "pg_database_size", "obj_description",
	"col_description", "shobj_description", "has_table_privilege", "has_schema_privilege",
	"has_column_privilege", "has_database_privilege", "pg_has_role", "pg_is_in_recovery", "pg_postmaster_start_time",
	"pg_typeof", "pg_column_size", "pg_get_keywords", "pg_partition_tree", "pg_partition_root",
	"txid_current", "pg_current_xact_id", "pg_sleep",
	"pg_advisory_lock", "pg_advisory_unlock", "pg_try_advisory_lock", "pg_advisory_xact_lock",
)

func setOf(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}
