-- Migration 0023: compile_filter lexes and lower-cases words the same in every database, whatever its locale (ASCII
-- letters, digits and _, and every character past ASCII, as imagesearch_pg/store/filters.py does). The rest
-- of the filter compiler is as sql/0016_filter.sql defines it.

-- Compile filter text to (condition, ints, strs): see the top of this file. NULL text gives a NULL
-- condition (no filter). Every problem raises InvalidFilter naming the 1-based character position.
CREATE FUNCTION imagesearch.compile_filter(p_filter text, OUT condition text, OUT ints integer[], OUT strs text[])
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    fields constant text[] := ARRAY['int_attr', 'int_attr2', 'int_attr3', 'int_attr4',
                                    'str_attr', 'str_attr2', 'str_attr3', 'str_attr4'];
    field_list constant text := 'int_attr, int_attr2, int_attr3, int_attr4, str_attr, str_attr2, str_attr3, str_attr4';
    -- Alternatives, one group each: 1 white space, 2 a closed string, 3 a quote that opens no closed string,
    -- 4 a number or a number-like word (1.5, 1e3), 5 a word, 6 an operator, 7 ( ) or a comma, 8 any other
    -- character (each begins where no other can, so the longest match names the kind).
    -- Word characters are ASCII letters, digits and _, and every character past ASCII: classes such as
    -- [:alnum:] follow the database's locale, and this must lex alike in every database (and as Python does).
    lexeme constant text :=
        '([ \t\r\n\v\f]+)|("(?:[^"\\]|\\[\s\S])*")|(")|([+-]?[0-9][0-9A-Za-z_.\u0080-\U0010ffff]*)'
        '|((?![0-9])[0-9A-Za-z_\u0080-\U0010ffff]+)'
        '|([<>!]=|[<>=])|([(),])|([^ \t\r\n\v\f"0-9A-Za-z_\u0080-\U0010ffff<>=(),+!-]|[+-](?![0-9])|!(?!=))';
    kinds text[] := '{}';   -- word integer string operator ( ) , other
    texts text[] := '{}';
    positions integer[] := '{}';
    errors text[] := '{}';  -- a lexer error, raised when the parser reaches the token ...
    error_at integer[] := '{}';  -- ... at this position
    m text[];
    at integer := 1;
    n integer;
    i integer := 1;
    body text;
    bad integer;
    kind text;
    tok text;
    pos integer;
    word text;
    field text;
    is_int boolean;
    op text;
    keyword text;
    sql text := '';
    opens integer[] := '{}';  -- positions of the open parentheses
    state text := 'operand';
    list_from integer;
    written text;
BEGIN
    ints := '{}';
    strs := '{}';
    IF p_filter IS NULL THEN
        RETURN;
    END IF;
    IF length(p_filter) > 4096 THEN
        PERFORM imagesearch.filter_fail(4097, format('the filter is longer than 4096 characters (%s characters)',
                                                     length(p_filter)));
    END IF;
    IF p_filter !~ '[^ \t\r\n\v\f]' THEN
        PERFORM imagesearch.filter_fail(1, 'the filter is empty; expected a comparison such as int_attr>=100');
    END IF;

    FOR m IN SELECT regexp_matches(p_filter, lexeme, 'g') LOOP
        n := length(coalesce(m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8]));
        IF m[1] IS NULL THEN
            tok := coalesce(m[2], m[3], m[4], m[5], m[6], m[7], m[8]);
            kind := CASE WHEN m[2] IS NOT NULL OR m[3] IS NOT NULL THEN 'string'
                         WHEN m[4] IS NOT NULL THEN CASE WHEN m[4] ~ '^[+-]?[0-9]+$' THEN 'integer' ELSE 'other' END
                         WHEN m[5] IS NOT NULL THEN 'word'
                         WHEN m[6] IS NOT NULL THEN 'operator'
                         WHEN m[7] IS NOT NULL THEN m[7]
                         ELSE 'other' END;
            errors := errors || NULL::text;
            error_at := error_at || NULL::integer;
            IF kind = 'string' THEN
                -- The first backslash left once the valid escapes are masked (same length) is a bad escape,
                -- unless it ends the filter (then the string is only unterminated).
                body := substr(p_filter, at + 1);
                IF m[2] IS NOT NULL THEN
                    body := substr(m[2], 2, length(m[2]) - 2);
                END IF;
                bad := strpos(regexp_replace(body, '\\[\\"]', 'xx', 'g'), '\');
                IF bad > 0 AND (m[2] IS NOT NULL OR bad < length(body)) THEN
                    errors[array_length(errors, 1)] := format(
                        'invalid escape %s in the string starting at position %s; only \" (a quote) and \\ (a backslash) are allowed',
                        imagesearch.filter_shown('\' || substr(body, bad + 1, 1)), at);
                    error_at[array_length(error_at, 1)] := at + bad;
                ELSIF m[3] IS NOT NULL THEN
                    errors[array_length(errors, 1)] := 'unterminated string: expected a closing ''"'' before the end of the filter'
                        || CASE WHEN strpos(body, '\') > 0
                                THEN ' (\" inside a string is an escaped quote; write \\ for a backslash)' ELSE '' END;
                    error_at[array_length(error_at, 1)] := at;
                END IF;
            END IF;
            kinds := kinds || kind;
            texts := texts || tok;
            positions := positions || at;
            IF m[3] IS NOT NULL THEN
                EXIT;  -- the rest of the filter is inside the unterminated string
            END IF;
        END IF;
        at := at + n;
    END LOOP;
    kinds := kinds || 'end'::text;
    texts := texts || ''::text;
    positions := positions || (length(p_filter) + 1);
    errors := errors || NULL::text;

    LOOP
        IF errors[i] IS NOT NULL THEN
            PERFORM imagesearch.filter_fail(error_at[i], errors[i]);
        END IF;
        kind := kinds[i];
        tok := texts[i];
        pos := positions[i];
        word := CASE WHEN kind = 'word' AND tok ~ '^[\x01-\x7f]*$' THEN lower(tok COLLATE pg_catalog."C") END;  -- ASCII rules whatever the locale (a Turkish one lowers I to ı)
        CASE state
        WHEN 'operand' THEN
            IF kind = '(' THEN
                IF coalesce(array_length(opens, 1), 0) >= 64 THEN
                    IF errors[i + 1] IS NOT NULL THEN  -- the parser reads the next token before it counts
                        PERFORM imagesearch.filter_fail(error_at[i + 1], errors[i + 1]);
                    END IF;
                    PERFORM imagesearch.filter_fail(pos, 'parentheses are nested deeper than 64 levels');
                END IF;
                opens := opens || pos;
                sql := sql || '(';
            ELSIF kind <> 'word' OR word IN ('and', 'or', 'not', 'in') THEN
                PERFORM imagesearch.filter_fail(pos, format('expected a field name (%s) or ''('', found %s',
                                                             field_list, imagesearch.filter_shown(tok, kind = 'end')));
            ELSIF word IS NULL OR NOT word = ANY (fields) THEN
                PERFORM imagesearch.filter_fail(pos, format('unknown field %s; the fields are %s',
                                                             imagesearch.filter_shown(tok), field_list));
            ELSE
                field := word;
                is_int := field LIKE 'int%';
                state := 'field';
            END IF;
        WHEN 'field' THEN
            IF word = 'in' THEN
                keyword := 'in';
                state := 'list';
            ELSIF word = 'not' THEN
                state := 'not';
            ELSIF kind = 'operator' AND (is_int OR tok IN ('=', '!=')) THEN
                op := tok;
                state := 'value';
            ELSIF is_int THEN
                PERFORM imagesearch.filter_fail(pos, format(
                    'expected a comparison operator (>, >=, <, <=, =, !=, in, not in) after %s, found %s',
                    field, imagesearch.filter_shown(tok, kind = 'end')));
            ELSE
                PERFORM imagesearch.filter_fail(pos, format(
                    'expected =, !=, in or not in after %s (a string field: > and < do not apply), found %s',
                    field, imagesearch.filter_shown(tok, kind = 'end')));
            END IF;
        WHEN 'not' THEN
            IF word IS DISTINCT FROM 'in' THEN
                PERFORM imagesearch.filter_fail(pos, format('expected ''in'' after ''%s not'', found %s',
                                                             field, imagesearch.filter_shown(tok, kind = 'end')));
            END IF;
            keyword := 'not in';
            state := 'list';
        WHEN 'list' THEN
            IF kind <> '(' THEN
                PERFORM imagesearch.filter_fail(pos, format('expected ''('' to open the list after ''%s %s'', found %s',
                                                             field, keyword, imagesearch.filter_shown(tok, kind = 'end')));
            END IF;
            IF kinds[i + 1] = ')' AND errors[i + 1] IS NULL THEN
                PERFORM imagesearch.filter_fail(positions[i + 1], format(
                    'the list after ''%s %s'' is empty; it needs a value', field, keyword));
            END IF;
            list_from := CASE WHEN is_int THEN coalesce(array_length(ints, 1), 0) ELSE coalesce(array_length(strs, 1), 0) END + 1;
            state := 'item';
        WHEN 'item', 'value' THEN
            IF is_int THEN
                IF kind <> 'integer' THEN
                    PERFORM imagesearch.filter_fail(pos, format('expected an integer %s (%s is an integer field), found %s',
                        CASE state WHEN 'value' THEN format('after ''%s %s''', field, op)
                                   ELSE format('in the list after ''%s %s''', field, keyword) END,
                        field, imagesearch.filter_shown(tok, kind = 'end')));
                END IF;
                written := ltrim(ltrim(tok, '+-'), '0');
                IF length(written) > 10 OR tok::numeric NOT BETWEEN -2147483648 AND 2147483647 THEN
                    PERFORM imagesearch.filter_fail(pos, format('integer %s is out of the 32-bit range -2147483648..2147483647',
                                                                 imagesearch.filter_shown(tok)));
                END IF;
                ints := ints || tok::integer;
            ELSE
                IF kind <> 'string' THEN
                    PERFORM imagesearch.filter_fail(pos, format('expected a double-quoted string %s (%s is a string field), found %s',
                        CASE state WHEN 'value' THEN format('after ''%s %s''', field, op)
                                   ELSE format('in the list after ''%s %s''', field, keyword) END,
                        field, imagesearch.filter_shown(tok, kind = 'end'))
                        || CASE WHEN tok = '''' THEN '; strings are written in double quotes' ELSE '' END);
                END IF;
                strs := strs || regexp_replace(substr(tok, 2, length(tok) - 2), '\\(.)', '\1', 'g');
            END IF;
            IF state = 'value' THEN
                sql := sql || CASE op
                    WHEN '!=' THEN format('p.%I IS DISTINCT FROM ($%s)[%s]', field, CASE WHEN is_int THEN 1 ELSE 2 END,
                                          CASE WHEN is_int THEN array_length(ints, 1) ELSE array_length(strs, 1) END)
                    ELSE format('p.%I %s ($%s)[%s]', field, op, CASE WHEN is_int THEN 1 ELSE 2 END,
                                CASE WHEN is_int THEN array_length(ints, 1) ELSE array_length(strs, 1) END)
                    END;
                state := 'joined';
            ELSE
                state := 'separator';
            END IF;
        WHEN 'separator' THEN
            IF kind = ',' THEN
                state := 'item';
            ELSIF kind = ')' THEN
                n := CASE WHEN is_int THEN array_length(ints, 1) ELSE array_length(strs, 1) END;
                sql := sql || format(CASE keyword WHEN 'in' THEN 'p.%1$I = ANY (($%2$s)[%3$s:%4$s])'
                                     ELSE '(p.%1$I IS NULL OR p.%1$I <> ALL (($%2$s)[%3$s:%4$s]))' END,
                                     field, CASE WHEN is_int THEN 1 ELSE 2 END, list_from, n);
                state := 'joined';
            ELSE
                PERFORM imagesearch.filter_fail(pos, format('expected '','' or '')'' in the list, found %s',
                                                             imagesearch.filter_shown(tok, kind = 'end')));
            END IF;
        WHEN 'joined' THEN
            IF word = 'and' THEN
                sql := sql || ' AND ';
                state := 'operand';
            ELSIF word = 'or' THEN
                sql := sql || ' OR ';
                state := 'operand';
            ELSIF coalesce(array_length(opens, 1), 0) > 0 THEN
                IF kind <> ')' THEN
                    PERFORM imagesearch.filter_fail(pos, format('expected AND, OR or '')'' to close the ''('' at position %s, found %s',
                        opens[array_length(opens, 1)], imagesearch.filter_shown(tok, kind = 'end')));
                END IF;
                opens := opens[1:array_length(opens, 1) - 1];
                sql := sql || ')';
            ELSIF kind = ')' THEN
                PERFORM imagesearch.filter_fail(pos, 'found '')'' without a matching ''(''');
            ELSIF kind <> 'end' THEN
                PERFORM imagesearch.filter_fail(pos, format('expected AND, OR or the end of the filter, found %s',
                                                             imagesearch.filter_shown(tok)));
            ELSE
                EXIT;
            END IF;
        END CASE;
        i := i + 1;
    END LOOP;
    condition := sql;
END $$;
