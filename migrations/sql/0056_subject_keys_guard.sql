-- A data subject's key is only ever deleted: once forgotten, a subject is
-- never given a key again (shred.ErrForgotten), and a live key is never
-- replaced, whichever role writes (the trigger binds the application role
-- of migrations.GrantApplication, which may write only the columns an
-- append and a forget write, and may delete neither the key rows nor the
-- record of the streams a subject's data went to).
CREATE FUNCTION strata_keep_forgotten() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.wrapped_key IS NOT NULL AND NEW.wrapped_key IS DISTINCT FROM OLD.wrapped_key THEN
        RAISE EXCEPTION 'strata: the key of data subject % can only be deleted', OLD.subject
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER strata_keep_forgotten BEFORE UPDATE ON subject_keys
    FOR EACH ROW EXECUTE FUNCTION strata_keep_forgotten();
