package export

// The descriptor types of data/datapackage.json (Frictionless Data Package v2). Only what custos writes; field
// order is the order in the file.

// ProfileDataPackage is the $schema of every datapackage.json custos writes.
const ProfileDataPackage = "https://datapackage.org/profiles/2.0/datapackage.json"

// NullString is how a CSV cell says NULL: the two characters backslash and N, unquoted. A quoted "\N" is the text
// \N; an empty cell is the empty string.
const NullString = `\N`

type dataPackage struct {
	Schema       string        `json:"$schema"`
	Name         string        `json:"name,omitempty"`
	Title        string        `json:"title,omitempty"`
	Description  string        `json:"description,omitempty"`
	Created      string        `json:"created,omitempty"`
	Contributors []contributor `json:"contributors,omitempty"`
	Resources    []resource    `json:"resources"`
}

type contributor struct {
	Title        string   `json:"title"`
	Email        string   `json:"email,omitempty"`
	Organization string   `json:"organization,omitempty"`
	Roles        []string `json:"roles,omitempty"`
}

type resource struct {
	Name        string       `json:"name"`
	Type        string       `json:"type,omitempty"`
	Path        string       `json:"path"`
	Format      string       `json:"format,omitempty"`
	Mediatype   string       `json:"mediatype,omitempty"`
	Encoding    string       `json:"encoding,omitempty"`
	Bytes       int64        `json:"bytes"`
	Hash        string       `json:"hash"`
	Title       string       `json:"title,omitempty"`
	Description string       `json:"description,omitempty"`
	Dialect     *dialect     `json:"dialect,omitempty"`
	Schema      *tableSchema `json:"schema,omitempty"`
	// PostgreSQL says where a table resource came from (a property of custos, not of the standard: a descriptor
	// may carry any other property).
	PostgreSQL *pgSource `json:"postgresql,omitempty"`
}

type pgSource struct {
	Schema string `json:"schema"`
	Table  string `json:"table"`
	// Name is the qualified name as PostgreSQL quotes it (quote_ident), e.g. public.orders or
	// clinic."Patiënt ""records"", 2024".
	Name string `json:"name"`
	// Kind is "table" or "partitioned table" (all partitions read through the parent).
	Kind string `json:"kind"`
	Rows int64  `json:"rows"`
}

type dialect struct {
	Header         bool   `json:"header"`
	Delimiter      string `json:"delimiter"`
	LineTerminator string `json:"lineTerminator"`
	QuoteChar      string `json:"quoteChar"`
	DoubleQuote    bool   `json:"doubleQuote"`
}

type tableSchema struct {
	Fields        []field      `json:"fields"`
	MissingValues []string     `json:"missingValues"`
	PrimaryKey    []string     `json:"primaryKey,omitempty"`
	UniqueKeys    [][]string   `json:"uniqueKeys,omitempty"`
	ForeignKeys   []foreignKey `json:"foreignKeys,omitempty"`
}

type field struct {
	Name        string       `json:"name"`
	Type        string       `json:"type"`
	Format      string       `json:"format,omitempty"`
	Description string       `json:"description,omitempty"`
	TrueValues  []string     `json:"trueValues,omitempty"`
	FalseValues []string     `json:"falseValues,omitempty"`
	Constraints *constraints `json:"constraints,omitempty"`
	// PostgreSQLType is the column's type as format_type prints it, e.g. numeric(40,20) (custos property).
	PostgreSQLType string `json:"postgresqlType"`
}

type constraints struct {
	Required  bool     `json:"required,omitempty"`
	MaxLength int      `json:"maxLength,omitempty"`
	Enum      []string `json:"enum,omitempty"`
}

type foreignKey struct {
	Fields    []string    `json:"fields"`
	Reference fkReference `json:"reference"`
}

type fkReference struct {
	Resource string   `json:"resource,omitempty"`
	Fields   []string `json:"fields"`
}
